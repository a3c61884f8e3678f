#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::imap_resp.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::imap_resp(data));
