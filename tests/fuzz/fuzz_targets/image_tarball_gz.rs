#![no_main]
//! Target `image_tarball_gz`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::image_tarball_gz(data));
