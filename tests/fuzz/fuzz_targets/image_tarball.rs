#![no_main]
//! Target `image_tarball`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::image_tarball(data));
