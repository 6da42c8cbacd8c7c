//! Authenticated encryption and key derivation: the only module that sees raw key bytes.
//!
//! A repository has one 256-bit [`MasterKey`], generated on the client. Everything else is
//! derived from it with BLAKE3 `derive_key` and a distinct context string ([`Keys`]). Objects
//! are sealed with AES-256-GCM or XChaCha20-Poly1305; [`seal`] draws a fresh 192-bit random
//! nonce itself, so no caller can reuse one. For AES-256-GCM, whose native nonce is only 96
//! bits, the first 96 bits of that nonce select a one-message subkey (see `docs/design.md`,
//! "Nonces"). Key types zeroize on drop and deliberately implement neither `Debug` nor
//! `Display`. This module never logs.

use std::ops::Range;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, ErrorKind, Result};

/// Bytes of nonce stored in front of every sealed object.
pub const NONCE_LEN: usize = 24;
/// Bytes of authentication tag stored after every sealed object.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object is longer than its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The AEAD chosen at `init` and recorded in the repository config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// AES-256-GCM with a per-message subkey (fast where AES-NI exists).
    Aes256Gcm,
    /// XChaCha20-Poly1305 (fast everywhere, native 192-bit nonces).
    XChaCha20Poly1305,
}

impl Cipher {
    /// The byte that identifies the cipher in the config header.
    pub fn code(self) -> u8 {
        match self {
            Cipher::Aes256Gcm => 1,
            Cipher::XChaCha20Poly1305 => 2,
        }
    }

    /// The cipher a config byte names.
    pub fn from_code(code: u8) -> Result<Self> {
        match code {
            1 => Ok(Cipher::Aes256Gcm),
            2 => Ok(Cipher::XChaCha20Poly1305),
            other => Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("unknown cipher code {other}; this repository needs a newer coffer"),
            )),
        }
    }

    /// The name used on the command line and in `--json` output.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::Aes256Gcm => "aes-256-gcm",
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
        }
    }

    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "aes-256-gcm" | "aes256gcm" | "aes" => Ok(Cipher::Aes256Gcm),
            "xchacha20-poly1305" | "xchacha20poly1305" | "xchacha" | "chacha" => {
                Ok(Cipher::XChaCha20Poly1305)
            }
            _ => Err(Error::invalid(format!(
                "unknown cipher {name:?}; use aes-256-gcm or xchacha20-poly1305"
            ))),
        }
    }
}

/// A 256-bit secret key. Zeroized on drop; never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; 32]);

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn random() -> Result<Self> {
        Ok(SecretKey(crate::clock::random_bytes()?))
    }

    /// Wraps raw bytes (from a decrypted key slot or a KDF).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// The raw bytes; only for wrapping into a key slot.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A subkey for `context` (BLAKE3 `derive_key`).
    fn derive(&self, context: &str) -> SecretKey {
        SecretKey(blake3::derive_key(context, &self.0))
    }
}

/// The repository's master secret. Only ever stored wrapped in key slots.
pub type MasterKey = SecretKey;

/// The subkeys derived from the master key, one per purpose.
pub struct Keys {
    cipher: Cipher,
    /// The repository format these keys read and write (1 or 2): it fixes how blob ids are
    /// computed ([`Keys::blob_id`]), how compressed blobs are framed ([`crate::blob`]) and
    /// what trees leave out ([`crate::tree`]).
    format: u32,
    data: SecretKey,
    chunk_id: SecretKey,
    chunker_seed: SecretKey,
    report_mac: SecretKey,
}

/// Context strings for BLAKE3 `derive_key`; changing one changes the format.
const CTX_DATA: &str = "coffer 2026-11 data encryption key v1";
const CTX_CHUNK_ID: &str = "coffer 2026-11 chunk id key v1";
const CTX_CHUNKER: &str = "coffer 2026-11 chunker seed v1";
const CTX_REPORT: &str = "coffer 2026-11 report mac key v1";
const CTX_AES_SUBKEY: &str = "coffer 2026-11 aes-256-gcm message subkey v1";

impl Keys {
    /// Derives every subkey from `master`, for the current format
    /// ([`crate::config::FORMAT_VERSION`]).
    pub fn derive(master: &MasterKey, cipher: Cipher) -> Self {
        Keys {
            cipher,
            format: crate::config::FORMAT_VERSION,
            data: master.derive(CTX_DATA),
            chunk_id: master.derive(CTX_CHUNK_ID),
            chunker_seed: master.derive(CTX_CHUNKER),
            report_mac: master.derive(CTX_REPORT),
        }
    }

    /// The cipher these keys seal with.
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// These keys for a repository of format `version` (1 or the current one).
    pub fn for_format(mut self, version: u32) -> Self {
        self.format = version;
        self
    }

    /// The repository format these keys are for.
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The id of a chunk or tree, keyed: without the key, the store cannot test whether it
    /// holds a known file. Format 1: `BLAKE3-keyed(K_id, data)`; format 2:
    /// `BLAKE3-keyed(K_id, BLAKE3(data))`, so that the plain BLAKE3 of a file that is one
    /// chunk, which its tree records anyway, gives the chunk's id.
    pub fn blob_id(&self, data: &[u8]) -> [u8; 32] {
        match self.format {
            1 => *blake3::keyed_hash(self.chunk_id.expose(), data).as_bytes(),
            _ => self.digest_id(blake3::hash(data).as_bytes()),
        }
    }

    /// The id of a blob whose plain BLAKE3 is `digest`, where the format derives ids from it.
    pub fn blob_id_of_digest(&self, digest: &[u8; 32]) -> Option<[u8; 32]> {
        (self.format >= 2).then(|| self.digest_id(digest))
    }

    fn digest_id(&self, digest: &[u8; 32]) -> [u8; 32] {
        *blake3::keyed_hash(self.chunk_id.expose(), digest).as_bytes()
    }

    /// The secret seed of the content-defined chunker.
    pub fn chunker_seed(&self) -> [u8; 32] {
        *self.chunker_seed.expose()
    }

    /// A MAC over `data` with the report key (for verification reports).
    pub fn report_mac(&self, data: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(self.report_mac.expose(), data).as_bytes()
    }

    /// Seals `plaintext` under the data key, binding `ad`.
    pub fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal(self.cipher, &self.data, ad, plaintext)
    }

    /// Seals in place: `buf` holds [`NONCE_LEN`] bytes of room followed by the plaintext.
    /// Fills in the nonce, encrypts the rest and appends the tag, with no copy of the message.
    pub fn seal_in_place(&self, ad: &[u8], buf: Vec<u8>) -> Result<Vec<u8>> {
        seal_in_place(self.cipher, &self.data, ad, buf)
    }

    /// Opens an object sealed by [`Keys::seal`] with the same `ad`.
    pub fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open(self.cipher, &self.data, ad, sealed)
    }

    /// [`Keys::open`] in place; see [`open_in_place`].
    pub fn open_in_place(&self, ad: &[u8], sealed: &mut [u8]) -> Result<Range<usize>> {
        open_in_place(self.cipher, &self.data, ad, sealed)
    }
}

/// Seals `plaintext`: returns `nonce ‖ ciphertext ‖ tag`. The nonce is drawn here, fresh.
pub fn seal(cipher: Cipher, key: &SecretKey, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(plaintext.len() + OVERHEAD);
    buf.resize(NONCE_LEN, 0);
    buf.extend_from_slice(plaintext);
    seal_in_place(cipher, key, ad, buf)
}

/// [`seal`] of `buf[NONCE_LEN..]`, whose first [`NONCE_LEN`] bytes are overwritten by the nonce.
pub fn seal_in_place(
    cipher: Cipher,
    key: &SecretKey,
    ad: &[u8],
    mut buf: Vec<u8>,
) -> Result<Vec<u8>> {
    if buf.len() < NONCE_LEN {
        return Err(Error::invalid("seal_in_place: no room for the nonce"));
    }
    let nonce: [u8; NONCE_LEN] = crate::clock::random_bytes()?;
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = encrypt(cipher, key, &nonce, ad, &mut buf[NONCE_LEN..])?;
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// Opens `nonce ‖ ciphertext ‖ tag`; any change to it or to `ad` is an error. Copies only
/// the ciphertext, which is decrypted in the returned buffer.
pub fn open(cipher: Cipher, key: &SecretKey, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let (nonce, body, tag) = sealed_parts(sealed)?;
    let mut plain = sealed[body].to_vec();
    decrypt(cipher, key, &nonce, ad, &mut plain, &tag)?;
    Ok(plain)
}

/// [`open`] without a copy: decrypts `sealed` where it lies and returns where in it the
/// plaintext is (between the nonce and the tag).
pub fn open_in_place(
    cipher: Cipher,
    key: &SecretKey,
    ad: &[u8],
    sealed: &mut [u8],
) -> Result<Range<usize>> {
    let (nonce, body, tag) = sealed_parts(sealed)?;
    decrypt(cipher, key, &nonce, ad, &mut sealed[body.clone()], &tag)?;
    Ok(body)
}

/// The nonce and tag of `nonce ‖ ciphertext ‖ tag`, and where the ciphertext lies.
fn sealed_parts(sealed: &[u8]) -> Result<([u8; NONCE_LEN], Range<usize>, [u8; TAG_LEN])> {
    if sealed.len() < OVERHEAD {
        return Err(Error::corrupt(
            "sealed object is shorter than nonce and tag",
        ));
    }
    let body = NONCE_LEN..sealed.len() - TAG_LEN;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[..NONCE_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&sealed[body.end..]);
    Ok((nonce, body, tag))
}

/// Encrypts `buf` in place and returns the tag.
fn encrypt(
    cipher: Cipher,
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN]> {
    let fail = || Error::invalid("message too long for the cipher");
    let mut out = [0u8; TAG_LEN];
    match cipher {
        Cipher::XChaCha20Poly1305 => {
            let aead = XChaCha20Poly1305::new(key.expose().into());
            let tag = aead
                .encrypt_inout_detached(&XNonce::from(*nonce), ad, buf.into())
                .map_err(|_| fail())?;
            out.copy_from_slice(&tag);
        }
        Cipher::Aes256Gcm => {
            let (aead, gcm_nonce) = aes_message_cipher(key, nonce)?;
            let tag = aead
                .seal_in_place_separate_tag(gcm_nonce, Aad::from(ad), buf)
                .map_err(|_| fail())?;
            out.copy_from_slice(tag.as_ref());
        }
    }
    Ok(out)
}

/// Decrypts `buf` in place if `tag` authenticates it with `ad`.
fn decrypt(
    cipher: Cipher,
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<()> {
    let fail = || Error::corrupt("authentication failed: the object was altered or swapped");
    match cipher {
        Cipher::XChaCha20Poly1305 => {
            let aead = XChaCha20Poly1305::new(key.expose().into());
            aead.decrypt_inout_detached(&XNonce::from(*nonce), ad, buf.into(), &(*tag).into())
                .map_err(|_| fail())
        }
        Cipher::Aes256Gcm => {
            let (aead, gcm_nonce) = aes_message_cipher(key, nonce)?;
            aead.open_in_place_separate_tag(gcm_nonce, Aad::from(ad), tag, buf)
                .map(|_| ())
                .map_err(|_| fail())
        }
    }
}

/// AES-256-GCM with a 192-bit nonce: the first 12 bytes pick a subkey
/// `BLAKE3-keyed(derive_key(CTX_AES_SUBKEY, key), nonce[0..12])`, the last 12 are the GCM
/// nonce. Random 96-bit GCM nonces alone would collide with probability about 2^-17 after
/// 2^40 messages; with the subkey, a repeat needs all 192 bits to collide (about 2^-113).
///
/// AES-256-GCM itself is AWS-LC's (through `aws-lc-rs`): about twice the throughput of the
/// portable implementation here. It keeps the expanded key in memory it cleanses when freed.
fn aes_message_cipher(key: &SecretKey, nonce: &[u8; NONCE_LEN]) -> Result<(LessSafeKey, Nonce)> {
    let derivation = key.derive(CTX_AES_SUBKEY);
    let mut sub = SecretKey(*blake3::keyed_hash(derivation.expose(), &nonce[..12]).as_bytes());
    let aead = UnboundKey::new(&AES_256_GCM, sub.expose());
    sub.zeroize();
    let aead = aead.map_err(|_| Error::invalid("AES-256-GCM key setup failed"))?;
    let mut gcm_nonce = [0u8; 12];
    gcm_nonce.copy_from_slice(&nonce[12..]);
    Ok((
        LessSafeKey::new(aead),
        Nonce::assume_unique_for_key(gcm_nonce),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(cipher: Cipher) -> Keys {
        Keys::derive(&SecretKey::from_bytes([7; 32]), cipher)
    }

    #[test]
    fn round_trip_both_ciphers() {
        for cipher in [Cipher::Aes256Gcm, Cipher::XChaCha20Poly1305] {
            let k = keys(cipher);
            let sealed = k.seal(b"ad", b"hello").unwrap();
            assert_eq!(sealed.len(), 5 + OVERHEAD);
            assert_eq!(k.open(b"ad", &sealed).unwrap(), b"hello");
            assert!(k.open(b"other ad", &sealed).is_err());
        }
    }

    #[test]
    fn nonces_differ_between_seals() {
        let k = keys(Cipher::Aes256Gcm);
        let a = k.seal(b"", b"same").unwrap();
        let b = k.seal(b"", b"same").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn truncated_is_corrupt_not_panic() {
        let k = keys(Cipher::XChaCha20Poly1305);
        for n in 0..OVERHEAD {
            assert_eq!(
                k.open(b"", &vec![0; n]).unwrap_err().kind(),
                ErrorKind::Corrupt
            );
        }
    }

    #[test]
    fn subkeys_are_distinct() {
        let k = keys(Cipher::Aes256Gcm);
        assert_ne!(k.blob_id(b"x"), k.report_mac(b"x"));
        assert_ne!(k.chunker_seed(), k.blob_id(b""));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_flipped_bit_is_detected(data in proptest::collection::vec(any::<u8>(), 0..512),
                                       bit in any::<usize>(), aes in any::<bool>()) {
            let k = keys(if aes { Cipher::Aes256Gcm } else { Cipher::XChaCha20Poly1305 });
            let mut sealed = k.seal(b"ad", &data).unwrap();
            prop_assert_eq!(&k.open(b"ad", &sealed).unwrap(), &data);
            let bit = bit % (sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(k.open(b"ad", &sealed).is_err());
        }
    }
}
