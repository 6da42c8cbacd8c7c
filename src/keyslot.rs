//! Key slots: the master key wrapped under a passphrase or a recovery key.
//!
//! A slot is stored as `keys/<id>`; it is the only object besides the config header that is
//! not encrypted with the master key. Layout (integers little-endian):
//!
//! `"COFFERKS" ‖ version u32 = 1 ‖ repo id [32] ‖ kind u8 ‖ m_kib u32 ‖ t u32 ‖ p u32 ‖
//!  salt [32] ‖ XChaCha20-Poly1305(KEK, master key [32]) ‖ seal(data key, CBOR SlotInfo)`
//!
//! with the 89 header bytes as associated data of both sealed parts, so KDF parameters cannot
//! be weakened unnoticed. The wrapped master key is always 72 bytes. The slot's facts (when,
//! host, user) are sealed with the repository's data key, so any key holder can list them. For a passphrase, KEK = Argon2id(passphrase, salt, m, t, p); for a
//! recovery key (256 random bits), KEK = BLAKE3 `derive_key` of it and the salt: it needs no
//! stretching.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::cbor;
use crate::crypto::{self, Cipher, Keys, MasterKey, SecretKey};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"COFFERKS";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 32 + 1 + 12 + 32;
const CTX_RECOVERY: &str = "coffer 2026-11 recovery key wrap v1";

/// A passphrase or recovery key as typed; zeroized on drop, never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Takes ownership of `s`.
    pub fn new(s: String) -> Self {
        Passphrase(Zeroizing::new(s))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether this has the form of a recovery key, so recovery slots are worth trying first.
    pub fn is_recovery_key(&self) -> bool {
        self.as_recovery_key().is_some()
    }

    /// The 32 bytes of a recovery key, if this is one (64 hex digits, dashes and spaces allowed).
    fn as_recovery_key(&self) -> Option<SecretKey> {
        let digits: Zeroizing<String> = Zeroizing::new(
            self.0
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect(),
        );
        let mut out = [0u8; 32];
        let ok = hex::decode_to_slice(digits.as_bytes(), &mut out).is_ok();
        let key = SecretKey::from_bytes(out);
        out.zeroize();
        ok.then_some(key)
    }
}

/// A random recovery key, shown to the user once.
pub struct RecoveryKey(SecretKey);

impl RecoveryKey {
    /// The key as 8 dash-separated groups of 8 hex digits (it can be typed as a passphrase).
    pub fn display_string(&self) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode(self.0.expose()));
        let groups: Vec<&str> = (0..8).map(|i| &hex[i * 8..i * 8 + 8]).collect();
        Zeroizing::new(groups.join("-"))
    }
}

/// Argon2id cost parameters, recorded in each passphrase slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Refuses parameters too weak to protect a passphrase or so large that a hostile store
    /// could use them to exhaust memory or time.
    pub fn validate(&self) -> Result<()> {
        let ok = (8 * 1024..=4 * 1024 * 1024).contains(&self.memory_kib)
            && (1..=64).contains(&self.iterations)
            && (1..=16).contains(&self.parallelism);
        if ok {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "Argon2id parameters m={} KiB t={} p={} are outside 8 MiB..4 GiB, 1..64 passes, 1..16 lanes",
                self.memory_kib, self.iterations, self.parallelism
            )))
        }
    }
}

/// How a slot's wrapping key is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// Argon2id of a passphrase.
    Passphrase,
    /// A 256-bit random recovery key.
    Recovery,
}

/// Facts about a slot, readable with the master key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotInfo {
    /// When the slot was made (ns since the epoch).
    pub created_ns: i64,
    /// Host that made it.
    pub host: String,
    /// User that made it.
    pub user: String,
}

/// A decoded key slot (still wrapped).
#[derive(Debug, Clone)]
pub struct KeySlot {
    /// The repository it belongs to.
    pub repo_id: [u8; 32],
    /// Passphrase or recovery key.
    pub kind: SlotKind,
    /// KDF parameters (ignored for recovery slots).
    pub kdf: KdfParams,
    salt: [u8; 32],
    header: Vec<u8>,
    wrapped: Vec<u8>,
    info: Vec<u8>,
}

const WRAPPED_LEN: usize = 32 + crypto::OVERHEAD;

/// Wraps `master` into a new slot's bytes.
pub fn create(
    keys: &Keys,
    repo_id: [u8; 32],
    master: &MasterKey,
    secret: &Passphrase,
    kind: SlotKind,
    kdf: KdfParams,
    info: &SlotInfo,
) -> Result<Vec<u8>> {
    kdf.validate()?;
    let salt: [u8; 32] = crate::clock::random_bytes()?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&repo_id);
    header.push(match kind {
        SlotKind::Passphrase => 1,
        SlotKind::Recovery => 2,
    });
    for v in [kdf.memory_kib, kdf.iterations, kdf.parallelism] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    let kek = wrapping_key(kind, &kdf, &salt, secret)?;
    let wrapped = crypto::seal(Cipher::XChaCha20Poly1305, &kek, &header, master.expose())?;
    let body = cbor::encode("key info", info)?;
    let sealed_info = keys.seal(&header, &body)?;
    header.extend_from_slice(&wrapped);
    header.extend_from_slice(&sealed_info);
    Ok(header)
}

/// Makes a fresh recovery key.
pub fn new_recovery_key() -> Result<(RecoveryKey, Passphrase)> {
    let key = RecoveryKey(SecretKey::random()?);
    let as_pass = Passphrase(key.display_string());
    Ok((key, as_pass))
}

/// Decodes a slot's plain part (exposed for fuzzing).
pub fn decode(bytes: &[u8]) -> Result<KeySlot> {
    if bytes.len() < HEADER_LEN + WRAPPED_LEN + crypto::OVERHEAD || &bytes[..8] != MAGIC {
        return Err(Error::corrupt("not a coffer key slot"));
    }
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = u32_at(8);
    if version != VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("key slot version {version} is not supported"),
        ));
    }
    let kind = match bytes[44] {
        1 => SlotKind::Passphrase,
        2 => SlotKind::Recovery,
        k => return Err(Error::corrupt(format!("unknown key slot kind {k}"))),
    };
    let kdf = KdfParams {
        memory_kib: u32_at(45),
        iterations: u32_at(49),
        parallelism: u32_at(53),
    };
    let mut repo_id = [0u8; 32];
    repo_id.copy_from_slice(&bytes[12..44]);
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&bytes[57..89]);
    let (wrapped, info) = bytes[HEADER_LEN..].split_at(WRAPPED_LEN);
    Ok(KeySlot {
        repo_id,
        kind,
        kdf,
        salt,
        header: bytes[..HEADER_LEN].to_vec(),
        wrapped: wrapped.to_vec(),
        info: info.to_vec(),
    })
}

impl KeySlot {
    /// Unwraps the master key, or `None` if `secret` does not open this slot.
    pub fn unlock(&self, secret: &Passphrase) -> Result<Option<MasterKey>> {
        if self.kind == SlotKind::Passphrase {
            self.kdf
                .validate()
                .map_err(|e| Error::corrupt(format!("key slot refused: {e}")))?;
        }
        let kek = match wrapping_key(self.kind, &self.kdf, &self.salt, secret) {
            Ok(k) => k,
            Err(e) if e.kind() == ErrorKind::WrongPassword => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(plain) = crypto::open(Cipher::XChaCha20Poly1305, &kek, &self.header, &self.wrapped)
        else {
            return Ok(None);
        };
        let plain = Zeroizing::new(plain);
        let mut raw: [u8; 32] = plain[..]
            .try_into()
            .map_err(|_| Error::corrupt("wrapped key has the wrong length"))?;
        let master = SecretKey::from_bytes(raw);
        raw.zeroize();
        Ok(Some(master))
    }

    /// The slot's facts, readable with the repository's keys.
    pub fn info(&self, keys: &Keys) -> Result<SlotInfo> {
        let body = keys
            .open(&self.header, &self.info)
            .map_err(|e| e.context("key slot info"))?;
        cbor::decode("key slot info", &body)
    }
}

fn wrapping_key(
    kind: SlotKind,
    kdf: &KdfParams,
    salt: &[u8; 32],
    secret: &Passphrase,
) -> Result<SecretKey> {
    match kind {
        SlotKind::Recovery => {
            let key = secret
                .as_recovery_key()
                .ok_or_else(|| Error::new(ErrorKind::WrongPassword, "not a recovery key"))?;
            let mut kek = blake3::Hasher::new_derive_key(CTX_RECOVERY);
            kek.update(key.expose());
            kek.update(salt);
            Ok(SecretKey::from_bytes(*kek.finalize().as_bytes()))
        }
        SlotKind::Passphrase => {
            let params =
                argon2::Params::new(kdf.memory_kib, kdf.iterations, kdf.parallelism, Some(32))
                    .map_err(|e| Error::invalid(format!("Argon2id parameters: {e}")))?;
            let argon =
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
            let mut out = [0u8; 32];
            argon
                .hash_password_into(secret.bytes(), salt, &mut out)
                .map_err(|e| Error::invalid(format!("Argon2id: {e}")))?;
            let key = SecretKey::from_bytes(out);
            out.zeroize();
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        }
    }

    fn keys(master: &MasterKey) -> Keys {
        Keys::derive(master, Cipher::Aes256Gcm)
    }

    fn info() -> SlotInfo {
        SlotInfo {
            created_ns: 1,
            host: "h".into(),
            user: "u".into(),
        }
    }

    #[test]
    fn passphrase_slot_round_trip() {
        let master = SecretKey::from_bytes([3; 32]);
        let bytes = create(
            &keys(&master),
            [1; 32],
            &master,
            &Passphrase::new("pw".into()),
            SlotKind::Passphrase,
            fast(),
            &info(),
        )
        .unwrap();
        let slot = decode(&bytes).unwrap();
        let got = slot.unlock(&Passphrase::new("pw".into())).unwrap().unwrap();
        assert_eq!(got.expose(), master.expose());
        assert_eq!(slot.info(&keys(&got)).unwrap(), info());
        assert!(
            slot.unlock(&Passphrase::new("wrong".into()))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn recovery_slot_round_trip() {
        let master = SecretKey::from_bytes([5; 32]);
        let (rk, pass) = new_recovery_key().unwrap();
        let bytes = create(
            &keys(&master),
            [1; 32],
            &master,
            &pass,
            SlotKind::Recovery,
            KdfParams::default(),
            &info(),
        )
        .unwrap();
        let slot = decode(&bytes).unwrap();
        let typed = Passphrase::new(rk.display_string().to_uppercase());
        assert!(slot.unlock(&typed).unwrap().is_some());
        assert!(
            slot.unlock(&Passphrase::new("pw".into()))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn tampered_kdf_params_fail() {
        let master = SecretKey::from_bytes([3; 32]);
        let mut bytes = create(
            &keys(&master),
            [1; 32],
            &master,
            &Passphrase::new("pw".into()),
            SlotKind::Passphrase,
            fast(),
            &info(),
        )
        .unwrap();
        bytes[49] = 2; // iterations 1 -> 2
        assert!(
            decode(&bytes)
                .unwrap()
                .unlock(&Passphrase::new("pw".into()))
                .unwrap()
                .is_none()
        );
        bytes[45..49].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode(&bytes)
                .unwrap()
                .unlock(&Passphrase::new("pw".into()))
                .is_err()
        );
    }
}
