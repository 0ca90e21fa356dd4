//! Arbitrary bytes through `warren_fuzz::edge::chunked`: it panics when an invariant breaks
//! (see its documentation for which).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| warren_fuzz::edge::chunked(data));
