//! Helpers shared by the fuzz targets and the seed corpus generator.

use std::sync::LazyLock;

use coffer::crypto::{Cipher, Keys, SecretKey};

/// The fixed master key every target (and every seed) uses.
pub const MASTER: [u8; 32] = [7; 32];

/// Associated data for the raw `crypto::open` target and its seeds.
pub const RAW_AD: &[u8] = b"coffer fuzz";

/// Keys derived from [`MASTER`] for AES-256-GCM (the repository default).
pub static AES_KEYS: LazyLock<Keys> =
    LazyLock::new(|| Keys::derive(&SecretKey::from_bytes(MASTER), Cipher::Aes256Gcm));

/// Keys derived from [`MASTER`] for XChaCha20-Poly1305.
pub static XCHACHA_KEYS: LazyLock<Keys> =
    LazyLock::new(|| Keys::derive(&SecretKey::from_bytes(MASTER), Cipher::XChaCha20Poly1305));

/// The raw key the `blob` target passes to `crypto::open`.
pub fn raw_key() -> SecretKey {
    SecretKey::from_bytes(MASTER)
}
