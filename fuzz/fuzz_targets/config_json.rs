#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::config_json.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::config_json(data));
