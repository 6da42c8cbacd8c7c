//! Writes seed inputs for every fuzz target: valid objects sealed with the fixed keys, and the
//! plaintext encodings behind them, so the fuzzer starts past the magic and length checks.
//!
//! Usage: `gen_corpus CORPUS_DIR` (writes `CORPUS_DIR/<target>/seed-*`).

use std::fs;
use std::path::{Path, PathBuf};

use coffer::blob::{BlobType, seal_blob};
use coffer::chunker::ChunkerParams;
use coffer::config::{Config, FORMAT_VERSION};
use coffer::crypto::{self, Cipher, Keys};
use coffer::id::{BlobId, ObjectId};
use coffer::index::{IndexedPack, seal_index};
use coffer::keyslot::{self, KdfParams, Passphrase, SlotInfo, SlotKind};
use coffer::pack::{PackBuilder, PackEntry};
use coffer::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use coffer::tree::{Node, NodeKind, Timestamp, Tree, Xattr};
use coffer_fuzz::{AES_KEYS, RAW_AD, XCHACHA_KEYS, raw_key};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Out(PathBuf);

impl Out {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) -> AnyResult<()> {
        let dir = self.0.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
        Ok(())
    }
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: Some("user".into()),
        group: None,
        mtime: Timestamp { sec: -5, nsec: 7 },
        ctime: Timestamp::default(),
        inode: 1,
        device: 2,
        links: 1,
        size: 0,
        content: vec![],
        blake3: None,
        subtree: None,
        target: None,
        rdev: 0,
        xattrs: vec![],
    }
}

fn tree() -> Tree {
    let mut file = node(b"file.txt", NodeKind::File);
    file.size = 5;
    file.content = vec![BlobId([3; 32]), BlobId([4; 32])];
    file.blake3 = Some(ObjectId::of(b"hello"));
    file.xattrs = vec![Xattr {
        name: b"user.k".to_vec(),
        value: b"v".to_vec(),
    }];
    let mut dir = node(b"dir", NodeKind::Dir);
    dir.subtree = Some(BlobId([5; 32]));
    let mut link = node(b"l\xff", NodeKind::Symlink);
    link.target = Some(b"../x".to_vec());
    Tree::new(vec![file, dir, link, node(b"fifo", NodeKind::Fifo)])
}

fn snapshot() -> Snapshot {
    Snapshot {
        version: SNAPSHOT_VERSION,
        time_ns: 1_700_000_000_000_000_000,
        tree: BlobId([1; 32]),
        paths: vec!["/home/user".into()],
        hostname: "host".into(),
        username: "user".into(),
        tags: vec!["daily".into()],
        parent: Some(ObjectId([2; 32])),
        program: "coffer fuzz".into(),
        summary: Summary {
            files_new: 3,
            bytes_read: 5,
            ..Summary::default()
        },
    }
}

fn pack(keys: &Keys) -> AnyResult<(Vec<u8>, Vec<PackEntry>)> {
    let mut b = PackBuilder::new();
    for (kind, data) in [
        (BlobType::Data, &b"one"[..]),
        (BlobType::Data, &[b'z'; 300][..]),
        (BlobType::Tree, b""),
    ] {
        let id = BlobId(keys.blob_id(data));
        b.add(kind, id, seal_blob(keys, kind, &id, data, 3)?, data.len())?;
    }
    let p = b.finish(keys)?;
    Ok((p.to_vec(), p.entries))
}

/// The plaintext pack header, as documented in `coffer::pack`.
fn pack_header_plain(entries: &[PackEntry]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.kind.code());
        out.extend_from_slice(&e.length.to_le_bytes());
        out.extend_from_slice(&e.raw_length.to_le_bytes());
        out.extend_from_slice(&e.id.0);
    }
    out
}

/// The plaintext index, as documented in `coffer::index`.
fn index_plain(packs: &[IndexedPack]) -> Vec<u8> {
    let mut out = vec![1];
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.id.0);
        out.extend_from_slice(&p.size.to_le_bytes());
        out.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            out.push(e.kind.code());
            out.extend_from_slice(&e.offset.to_le_bytes());
            out.extend_from_slice(&e.length.to_le_bytes());
            out.extend_from_slice(&e.raw_length.to_le_bytes());
            out.extend_from_slice(&e.id.0);
        }
    }
    out
}

fn main() -> AnyResult<()> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: gen_corpus CORPUS_DIR")?;
    let out = Out(Path::new(&dir).to_path_buf());
    let keys: &Keys = &AES_KEYS;
    let master = raw_key();
    let info = SlotInfo {
        created_ns: 1,
        host: "host".into(),
        user: "user".into(),
    };

    // keyslot: a passphrase slot (cheapest Argon2 the format accepts) and a recovery slot.
    let fast = KdfParams {
        memory_kib: 8 * 1024,
        iterations: 1,
        parallelism: 1,
    };
    for (name, kind) in [
        ("passphrase", SlotKind::Passphrase),
        ("recovery", SlotKind::Recovery),
    ] {
        let secret = match kind {
            SlotKind::Passphrase => Passphrase::new("pw".into()),
            SlotKind::Recovery => keyslot::new_recovery_key()?.1,
        };
        let slot = keyslot::create(keys, [1; 32], &master, &secret, kind, fast, &info)?;
        out.put("keyslot", name, &slot)?;
    }

    // config
    let config = Config {
        repo_id: [9; 32],
        cipher: Cipher::Aes256Gcm,
        format: FORMAT_VERSION,
        chunker: ChunkerParams::default(),
        compression: 3,
        pack_size: 1 << 24,
        created_ns: 5,
    };
    out.put("config", "aes", &config.seal(keys)?)?;

    // pack_header: a whole pack and its decrypted header.
    let (pack_bytes, entries) = pack(keys)?;
    out.put("pack_header", "pack", &pack_bytes)?;
    out.put("pack_header", "plain", &pack_header_plain(&entries))?;

    // index: sealed and plain.
    let packs = vec![IndexedPack {
        id: ObjectId::of(&pack_bytes),
        size: pack_bytes.len() as u64,
        entries,
    }];
    out.put("index", "sealed", &seal_index(keys, &packs)?)?;
    out.put("index", "plain", &index_plain(&packs))?;
    out.put("index", "empty", &index_plain(&[]))?;

    // tree
    out.put("tree", "mixed", &tree().encode()?)?;
    out.put("tree", "empty", &Tree::new(vec![]).encode()?)?;
    out.put("tree", "format2", &tree().encode_for(keys)?)?;

    // snapshot: sealed and the CBOR body.
    let snap = snapshot();
    out.put("snapshot", "sealed", &snap.seal(keys)?)?;
    let mut body = Vec::new();
    ciborium::into_writer(&snap, &mut body)?;
    out.put("snapshot", "plain", &body)?;

    // blob: compressed and raw blobs under the id the target uses, and raw sealed objects.
    let id = BlobId([0; 32]);
    let compressible = b"abcdefgh".repeat(64);
    out.put(
        "blob",
        "zstd",
        &seal_blob(keys, BlobType::Data, &id, &compressible, 3)?,
    )?;
    out.put(
        "blob",
        "raw",
        &seal_blob(&XCHACHA_KEYS, BlobType::Tree, &id, b"raw bytes", 0)?,
    )?;
    let key = raw_key();
    for (name, cipher) in [
        ("aes", Cipher::Aes256Gcm),
        ("xchacha", Cipher::XChaCha20Poly1305),
    ] {
        out.put(
            "blob",
            name,
            &crypto::seal(cipher, &key, RAW_AD, b"sealed object")?,
        )?;
    }
    Ok(())
}
