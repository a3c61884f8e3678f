#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::imap_session.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::imap_session(data));
