#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::smtp_session.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::smtp_session(data));
