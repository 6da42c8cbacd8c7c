//! Sealed blobs and raw sealed objects, with both ciphers.
#![no_main]

use coffer::blob::{BlobType, open_blob};
use coffer::crypto::{self, Cipher};
use coffer::id::BlobId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let id = BlobId([0; 32]);
    let _ = open_blob(&coffer_fuzz::AES_KEYS, BlobType::Data, &id, data);
    let _ = open_blob(&coffer_fuzz::XCHACHA_KEYS, BlobType::Tree, &id, data);
    let key = coffer_fuzz::raw_key();
    for cipher in [Cipher::Aes256Gcm, Cipher::XChaCha20Poly1305] {
        let _ = crypto::open(cipher, &key, coffer_fuzz::RAW_AD, data);
    }
});
