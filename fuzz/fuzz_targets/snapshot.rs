//! Snapshots: the decrypted body's decoder, and opening a sealed one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = coffer::snapshot::Snapshot::decode(data);
    let _ = coffer::snapshot::Snapshot::open(&coffer_fuzz::AES_KEYS, data);
});
