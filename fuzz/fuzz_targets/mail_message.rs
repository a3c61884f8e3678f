#![no_main]
//! See fuzz/README.md and mailoauth::fuzzing::mail_message.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailoauth::fuzzing::mail_message(data));
