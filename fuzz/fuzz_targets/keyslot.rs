//! Key slots are read from the store before any key is known: decoding must never panic.
//! `unlock` is left out on purpose (Argon2 is far too slow to fuzz).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(slot) = coffer::keyslot::decode(data) {
        let _ = slot.kdf.validate();
        let _ = slot.info(&coffer_fuzz::AES_KEYS);
    }
});
