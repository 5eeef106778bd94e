#![no_main]
//! Target `config`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::config(data));
