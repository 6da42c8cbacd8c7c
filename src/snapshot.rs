//! Snapshots: the root of one backup, stored as `snapshots/<id>`.
//!
//! A snapshot names its root tree, when and where it was taken, what was backed up, its tags
//! and parent, and a summary of the run. It is CBOR sealed with the data key; its name is the
//! BLAKE3 of the stored bytes. A snapshot is written last, after its packs and index, so a
//! visible snapshot is always complete.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::id::{BlobId, ObjectId};

const SNAPSHOT_AD: &[u8] = b"coffer snapshot v1";
/// The snapshot encoding version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Counts from the backup that made a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose metadata changed since the parent.
    pub files_changed: u64,
    /// Files reused from the parent without reading.
    pub files_unchanged: u64,
    /// Directories.
    pub dirs: u64,
    /// Other entries (symlinks, devices, FIFOs, sockets).
    pub others: u64,
    /// Bytes read from files.
    pub bytes_read: u64,
    /// Bytes of all files in the snapshot.
    pub bytes_total: u64,
    /// Blobs added.
    pub blobs_added: u64,
    /// Bytes stored after dedup, compression and encryption.
    pub bytes_added: u64,
    /// Wall-clock duration in ns.
    pub duration_ns: u64,
    /// Number of warnings (unreadable or changing files).
    pub warnings: u64,
}

/// One backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Encoding version.
    pub version: u32,
    /// When the backup started (ns since the epoch).
    pub time_ns: i64,
    /// Root tree.
    pub tree: BlobId,
    /// Paths as given on the command line (absolute).
    pub paths: Vec<String>,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The snapshot used to skip unchanged files.
    #[serde(default)]
    pub parent: Option<ObjectId>,
    /// Coffer version that wrote it.
    pub program: String,
    /// Counts from the run.
    #[serde(default)]
    pub summary: Summary,
}

impl Snapshot {
    /// Encodes and seals.
    pub fn seal(&self, keys: &Keys) -> Result<Vec<u8>> {
        keys.seal(SNAPSHOT_AD, &cbor::encode("snapshot", self)?)
    }

    /// Opens a sealed snapshot.
    pub fn open(keys: &Keys, sealed: &[u8]) -> Result<Snapshot> {
        Snapshot::decode(&keys.open(SNAPSHOT_AD, sealed)?)
    }

    /// Decodes a decrypted snapshot (exposed for fuzzing).
    pub fn decode(body: &[u8]) -> Result<Snapshot> {
        let s: Snapshot = cbor::decode("snapshot", body)?;
        if s.version != SNAPSHOT_VERSION {
            return Err(Error::new(
                crate::error::ErrorKind::UnsupportedVersion,
                format!("snapshot version {} is unknown; upgrade coffer", s.version),
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Cipher, SecretKey};

    #[test]
    fn round_trip() {
        let k = Keys::derive(&SecretKey::from_bytes([8; 32]), Cipher::XChaCha20Poly1305);
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            time_ns: -1,
            tree: BlobId([1; 32]),
            paths: vec!["/a".into()],
            hostname: "h".into(),
            username: "u".into(),
            tags: vec!["t".into()],
            parent: None,
            program: "coffer test".into(),
            summary: Summary::default(),
        };
        assert_eq!(Snapshot::open(&k, &s.seal(&k).unwrap()).unwrap(), s);
        assert!(Snapshot::decode(b"junk").is_err());
    }
}
