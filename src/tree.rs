//! Trees: one directory's entries, encoded as CBOR and stored as a tree blob.
//!
//! A [`Node`] records everything needed to recreate a file-system object faithfully: type,
//! name as raw bytes (names need not be UTF-8), permission bits including setuid/setgid/sticky,
//! owner ids and names, nanosecond times (signed, so before 1970 and after 2038 work), inode
//! and device for hardlink detection (access times are not kept: they change on every read
//! and would defeat tree dedup), extended attributes, and for regular files the chunk
//! list plus the plain BLAKE3 of the whole file. Directories point at their subtree's blob id.
//! Nodes are sorted by name, so equal directories encode to equal bytes and dedup. In a format
//! 2 repository, a file that is one chunk is stored without its chunk list: the chunk's id
//! follows from the file's BLAKE3 ([`crate::crypto::Keys::blob_id`]), and
//! [`Tree::decode_for`] lists it again; and a status-change time equal to the modification
//! time (a file written and not touched since) is left out.

use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::crypto::Keys;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{BlobId, ObjectId, bytes_field};

/// The tree encoding version written into every tree.
pub const TREE_VERSION: u32 = 1;

/// What kind of file-system object a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (never followed).
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
    /// Unix socket (recorded; not recreated).
    Socket,
}

/// A timestamp with nanosecond precision; seconds may be negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

/// One extended attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name (raw bytes).
    #[serde(with = "bytes_field")]
    pub name: Vec<u8>,
    /// Attribute value.
    #[serde(with = "bytes_field")]
    pub value: Vec<u8>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (raw bytes, no slash).
    #[serde(with = "bytes_field")]
    pub name: Vec<u8>,
    /// Object type.
    pub kind: NodeKind,
    /// Permission bits, including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Owner user name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Owner group name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Modification time.
    pub mtime: Timestamp,
    /// Status change time (used to detect changes; cannot be restored). Stored only where it
    /// differs from `mtime` in format 2 (see the module header).
    #[serde(default = "same_as_mtime", skip_serializing_if = "is_same_as_mtime")]
    pub ctime: Timestamp,
    /// Inode number.
    pub inode: u64,
    /// Device id of the containing file system.
    pub device: u64,
    /// Hard link count.
    pub links: u64,
    /// Size in bytes (files) or 0.
    pub size: u64,
    /// Chunk ids of the content, in order (files). Stored empty for a file of one chunk whose
    /// id derives from `blake3` (see the module header).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    /// Plain BLAKE3 of the whole file (files), checkable with `b3sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<ObjectId>,
    /// The subtree (directories).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
    /// Link target (symlinks), raw bytes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    pub target: Option<Vec<u8>>,
    /// Device number (device nodes).
    #[serde(default)]
    pub rdev: u64,
    /// Extended attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xattrs: Vec<Xattr>,
}

mod opt_bytes {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_bytes(b),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        crate::id::serde_bytes_buf(d).map(Some)
    }
}

/// A stored node's `ctime` that stands for its `mtime`: no real time has these nanoseconds.
const SAME_AS_MTIME: Timestamp = Timestamp {
    sec: 0,
    nsec: u32::MAX,
};

fn same_as_mtime() -> Timestamp {
    SAME_AS_MTIME
}

fn is_same_as_mtime(t: &Timestamp) -> bool {
    *t == SAME_AS_MTIME
}

/// A directory: its entries sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Encoding version.
    pub version: u32,
    /// Entries, sorted by name, names unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// A tree of `nodes`, sorted by name.
    pub fn new(mut nodes: Vec<Node>) -> Self {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        Tree {
            version: TREE_VERSION,
            nodes,
        }
    }

    /// The node called `name`.
    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// Encodes the tree.
    pub fn encode(&self) -> Result<Vec<u8>> {
        cbor::encode("tree", self)
    }

    /// Encodes the tree for a repository with `keys`. In format 2, a file that is one chunk
    /// whose id the keys derive from the file's BLAKE3 is stored without its chunk list, and
    /// a `ctime` equal to the `mtime` is left out.
    pub fn encode_for(mut self, keys: &Keys) -> Result<Vec<u8>> {
        if keys.format() < 2 {
            return self.encode();
        }
        for node in &mut self.nodes {
            if node.ctime == node.mtime {
                node.ctime = SAME_AS_MTIME;
            }
            let derived = match (node.kind, node.content.as_slice(), node.blake3) {
                (NodeKind::File, [only], Some(hash)) => {
                    keys.blob_id_of_digest(&hash.0) == Some(only.0)
                }
                _ => false,
            };
            if derived {
                node.content.clear();
            }
        }
        self.encode()
    }

    /// Decodes and validates a tree of a repository with `keys`, listing the chunk of every
    /// file stored without its chunk list ([`Tree::encode_for`]).
    pub fn decode_for(bytes: &[u8], keys: &Keys) -> Result<Tree> {
        let mut tree = Tree::decode(bytes)?;
        for node in &mut tree.nodes {
            if node.kind == NodeKind::File && node.size > 0 && node.content.is_empty() {
                let id = node.blake3.and_then(|hash| keys.blob_id_of_digest(&hash.0));
                let id = id.ok_or_else(|| Error::corrupt("a file entry lists no chunks"))?;
                node.content.push(BlobId(id));
            }
        }
        Ok(tree)
    }

    /// Decodes and validates a tree as stored (exposed for fuzzing).
    pub fn decode(bytes: &[u8]) -> Result<Tree> {
        let mut tree: Tree = cbor::decode("tree", bytes)?;
        for node in &mut tree.nodes {
            if node.ctime == SAME_AS_MTIME {
                node.ctime = node.mtime;
            }
        }
        if tree.version != TREE_VERSION {
            return Err(Error::new(
                ErrorKind::UnsupportedVersion,
                format!("tree version {} is unknown; upgrade coffer", tree.version),
            ));
        }
        for pair in tree.nodes.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(Error::corrupt("tree entries are not sorted and unique"));
            }
        }
        for n in &tree.nodes {
            let bad_name = n.name.is_empty()
                || n.name.contains(&b'/')
                || n.name.contains(&0)
                || n.name == b"."
                || n.name == b"..";
            if bad_name {
                return Err(Error::corrupt(format!(
                    "tree holds an unsafe file name {:?}",
                    String::from_utf8_lossy(&n.name)
                )));
            }
            if n.kind == NodeKind::Dir && n.subtree.is_none() {
                return Err(Error::corrupt("directory entry without a subtree"));
            }
            if n.kind == NodeKind::Symlink && n.target.is_none() {
                return Err(Error::corrupt("symlink entry without a target"));
            }
            if n.mtime.nsec >= 1_000_000_000 || n.ctime.nsec >= 1_000_000_000 {
                return Err(Error::corrupt("timestamp with nanoseconds out of range"));
            }
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn node(name: &[u8], kind: NodeKind) -> Node {
        Node {
            name: name.to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime: Timestamp { sec: -5, nsec: 7 },
            ctime: Timestamp::default(),
            inode: 1,
            device: 2,
            links: 1,
            size: 0,
            content: vec![],
            blake3: None,
            subtree: (kind == NodeKind::Dir).then_some(BlobId([1; 32])),
            target: None,
            rdev: 0,
            xattrs: vec![],
        }
    }

    #[test]
    fn round_trip_with_odd_names() {
        let mut link = node(b"l\n\xff", NodeKind::Symlink);
        link.target = Some(b"../nowhere\xfe".to_vec());
        let t = Tree::new(vec![
            node(b"z", NodeKind::File),
            link,
            node(b"d", NodeKind::Dir),
        ]);
        let back = Tree::decode(&t.encode().unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.find(b"z").unwrap().kind, NodeKind::File);
    }

    #[test]
    fn rejects_unsafe_names() {
        for name in [&b".."[..], b"a/b", b""] {
            let t = Tree {
                version: TREE_VERSION,
                nodes: vec![node(name, NodeKind::File)],
            };
            assert!(Tree::decode(&t.encode().unwrap()).is_err());
        }
        assert!(Tree::decode(b"\xff\x00").is_err());
    }

    #[test]
    fn one_chunk_files_store_no_chunk_list_in_format_2() {
        use crate::crypto::{Cipher, SecretKey};
        let keys = Keys::derive(&SecretKey::from_bytes([3; 32]), Cipher::Aes256Gcm);
        let file = |name: &[u8], chunks: &[&[u8]]| {
            let mut n = node(name, NodeKind::File);
            let whole = chunks.concat();
            n.size = whole.len() as u64;
            n.blake3 = Some(ObjectId(*blake3::hash(&whole).as_bytes()));
            n.content = chunks.iter().map(|c| BlobId(keys.blob_id(c))).collect();
            n
        };
        let mut forged = file(b"d", &[b"x"]);
        forged.content = vec![BlobId([9; 32])];
        let mut untouched = file(b"a", &[b"one chunk"]);
        untouched.ctime = untouched.mtime;
        let t = Tree::new(vec![
            untouched,
            file(b"b", &[b"two ", b"chunks"]),
            node(b"c", NodeKind::File),
            forged,
        ]);
        let bytes = t.clone().encode_for(&keys).unwrap();
        let stored = Tree::decode(&bytes).unwrap();
        let lists: Vec<usize> = stored.nodes.iter().map(|n| n.content.len()).collect();
        // Only a list the keys would derive again is left out, and the one ctime equal to its
        // mtime.
        assert_eq!(lists, [0, 2, 0, 1]);
        let ctimes = |b: &[u8]| b.windows(5).filter(|w| w == b"ctime").count();
        assert_eq!(ctimes(&bytes), 3);
        assert_eq!(Tree::decode_for(&bytes, &keys).unwrap(), t);
        // Format 1 keys derive nothing: they keep every list and every ctime, and refuse a
        // node without a list.
        let v1 = Keys::derive(&SecretKey::from_bytes([3; 32]), Cipher::Aes256Gcm).for_format(1);
        let v1_bytes = t.clone().encode_for(&v1).unwrap();
        assert_eq!(ctimes(&v1_bytes), 4);
        assert_eq!(Tree::decode(&v1_bytes).unwrap(), t);
        assert!(Tree::decode_for(&bytes, &v1).is_err());
        // Nor does a file of some bytes without a BLAKE3 get a chunk.
        let mut no_hash = stored.clone();
        no_hash.nodes[0].blake3 = None;
        assert!(Tree::decode_for(&no_hash.encode().unwrap(), &keys).is_err());
    }
}
