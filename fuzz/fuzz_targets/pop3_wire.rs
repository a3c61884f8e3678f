#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::pop3_wire.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::pop3_wire(data));
