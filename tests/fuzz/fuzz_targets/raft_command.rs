#![no_main]
//! Target `raft_command`: see shoal_tests::fuzzing.
libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_tests::fuzzing::raft_command(data));
