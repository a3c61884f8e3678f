#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::idp_error.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::idp_error(data));
