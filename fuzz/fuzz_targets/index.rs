//! Index objects: the decrypted index's decoder, and opening a sealed one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(packs) = coffer::index::decode_index(data) {
        let mut index = coffer::index::Index::default();
        for p in &packs {
            index.add_pack(p);
        }
    }
    let _ = coffer::index::open_index(&coffer_fuzz::AES_KEYS, data);
});
