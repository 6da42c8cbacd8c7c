//! The repository config: a small plain header and the sealed repository parameters.
//!
//! Stored once as `config`. Layout: `"COFFERRP" ‖ format version u32 LE ‖ repo id [32] ‖
//! cipher u8 ‖ seal(CBOR body)`, with the 45 header bytes as associated data. The header is
//! plain because a client must know the cipher before it can decrypt anything; the body
//! repeats nothing secret but is authenticated, so chunk sizes cannot be changed unnoticed.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::chunker::ChunkerParams;
use crate::crypto::{Cipher, Keys};
use crate::error::{Error, ErrorKind, Result};

const MAGIC: &[u8; 8] = b"COFFERRP";
/// The repository format version this build creates. It also reads and writes version 1
/// repositories (see [`crate::crypto::Keys::for_format`] and docs/design.md, Versioning).
pub const FORMAT_VERSION: u32 = 2;
const HEADER_LEN: usize = 8 + 4 + 32 + 1;

/// Repository-wide parameters, fixed at `init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Random repository id.
    pub repo_id: [u8; 32],
    /// The AEAD for every object.
    #[serde(skip, default = "default_cipher")]
    pub cipher: Cipher,
    /// The format version (from the header).
    #[serde(skip, default)]
    pub format: u32,
    /// Chunk size bounds.
    pub chunker: ChunkerParams,
    /// zstd level (0 = off).
    pub compression: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// When the repository was created (ns since the epoch).
    pub created_ns: i64,
}

fn default_cipher() -> Cipher {
    Cipher::XChaCha20Poly1305
}

/// The plain part of the config, readable before any key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigHeader {
    /// Random repository id.
    pub repo_id: [u8; 32],
    /// The AEAD.
    pub cipher: Cipher,
    /// The format version, 1 to [`FORMAT_VERSION`].
    pub version: u32,
}

/// Reads the plain header (exposed for fuzzing).
pub fn read_header(bytes: &[u8]) -> Result<ConfigHeader> {
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return Err(Error::new(
            ErrorKind::NoRepository,
            "the config object is not a coffer repository config",
        ));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "repository format version {version} is not supported by this coffer (it reads versions 1 to {FORMAT_VERSION}); upgrade coffer"
            ),
        ));
    }
    let mut repo_id = [0u8; 32];
    repo_id.copy_from_slice(&bytes[12..44]);
    Ok(ConfigHeader {
        repo_id,
        cipher: Cipher::from_code(bytes[44])?,
        version,
    })
}

impl Config {
    /// Encodes and seals the config.
    pub fn seal(&self, keys: &Keys) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.format.to_le_bytes());
        out.extend_from_slice(&self.repo_id);
        out.push(self.cipher.code());
        let sealed = keys.seal(&out, &cbor::encode("config", self)?)?;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a sealed config with keys derived for its header's cipher.
    pub fn open(keys: &Keys, bytes: &[u8]) -> Result<Config> {
        let header = read_header(bytes)?;
        let body = keys
            .open(&bytes[..HEADER_LEN], &bytes[HEADER_LEN..])
            .map_err(|e| e.context("config"))?;
        let mut config: Config = cbor::decode("config body", &body)?;
        if config.repo_id != header.repo_id {
            return Err(Error::corrupt(
                "config body names another repository than its header",
            ));
        }
        config.cipher = header.cipher;
        config.format = header.version;
        config
            .chunker
            .validate()
            .map_err(|e| Error::corrupt(format!("config: {e}")))?;
        if !(0..=22).contains(&config.compression)
            || !(1 << 20..=1 << 30).contains(&config.pack_size)
        {
            return Err(Error::corrupt(
                "config: compression level or pack size out of range",
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SecretKey;

    #[test]
    fn round_trip_and_tamper() {
        let keys = Keys::derive(&SecretKey::from_bytes([1; 32]), Cipher::Aes256Gcm);
        let c = Config {
            repo_id: [7; 32],
            cipher: Cipher::Aes256Gcm,
            format: FORMAT_VERSION,
            chunker: ChunkerParams::default(),
            compression: 3,
            pack_size: 1 << 24,
            created_ns: 5,
        };
        let mut bytes = c.seal(&keys).unwrap();
        assert_eq!(Config::open(&keys, &bytes).unwrap(), c);
        bytes[44] = 2;
        assert!(Config::open(&keys, &bytes).is_err());
        bytes[8] = 9;
        assert_eq!(
            read_header(&bytes).unwrap_err().kind(),
            ErrorKind::UnsupportedVersion
        );
    }
}
