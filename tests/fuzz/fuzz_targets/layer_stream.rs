#![no_main]
//! Target `layer_stream`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::layer_stream(data));
