//! Pack headers: the decrypted header's decoder, and a whole pack's trailer parsing.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer::pack::decode_header(data);
    let _ = coffer::pack::read_header(&coffer_fuzz::AES_KEYS, data);
});
