#![no_main]
//! Target `api_request`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::api_request(data));
