//! The repository config header is plain and read first; the body is sealed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer::config::read_header(data);
    let _ = coffer::config::Config::open(&coffer_fuzz::AES_KEYS, data);
});
