//! Replays the test vectors of `docs/design.md` (section "Test vectors").
//!
//! Each vector is checked twice where it can be: through coffer's public API, and
//! independently from the primitives and byte layouts the specification names (BLAKE3 modes,
//! Argon2id, XChaCha20-Poly1305, AES-256-GCM with its per-message subkey, zstd, CBOR), so the
//! document and the code cannot drift apart unnoticed. The test fails if a vector is missing,
//! unknown or wrong, and it checks that flipping any byte of a sealed vector is detected.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use coffer::blob::{BlobType, open_blob, seal_blob};
use coffer::chunker::{ChunkStream, Chunker, ChunkerParams};
use coffer::config::{self, Config};
use coffer::crypto::{Cipher, Keys, MasterKey, SecretKey};
use coffer::id::{BlobId, ObjectId};
use coffer::index::{Index, IndexedPack, decode_index, open_index};
use coffer::keyslot::{self, KdfParams, Passphrase, SlotInfo, SlotKind};
use coffer::pack::{PackEntry, decode_header, read_header};
use coffer::snapshot::{Snapshot, Summary};
use coffer::tree::{Node, NodeKind, Timestamp, Tree};

/// Every vector the document must hold, no more and no less.
const NAMES: &[&str] = &[
    "master_key",
    "subkey.data",
    "subkey.chunk_id",
    "subkey.chunker_seed",
    "subkey.report_mac_key",
    "subkey.aes_message_derivation",
    "input",
    "blob_id.input",
    "blob_id_v2.input",
    "report_mac.input",
    "blob.zstd.plain",
    "blob.zstd.id",
    "blob.zstd.aes-256-gcm",
    "blob.zstd.aes-256-gcm.message_key",
    "blob.zstd.xchacha20-poly1305",
    "blob.raw.plain",
    "blob.raw.id",
    "blob.raw.aes-256-gcm",
    "blob.raw.xchacha20-poly1305",
    "tree.plain",
    "tree.id",
    "tree.aes-256-gcm",
    "tree_v2.plain",
    "blob.zstd_v2.id",
    "blob.zstd_v2.aes-256-gcm",
    "pack.data",
    "pack.data.id",
    "pack.tree",
    "pack.tree.id",
    "index",
    "index.id",
    "snapshot.plain",
    "snapshot",
    "snapshot.id",
    "repo_id",
    "config.plain",
    "config.aes-256-gcm",
    "config.xchacha20-poly1305",
    "keyslot.info.plain",
    "keyslot.passphrase.secret",
    "keyslot.passphrase",
    "keyslot.passphrase.kek",
    "keyslot.recovery.key",
    "keyslot.recovery",
    "keyslot.recovery.kek",
    "chunker.golden.lengths",
];

const CTX_DATA: &str = "coffer 2026-11 data encryption key v1";
const CTX_CHUNK_ID: &str = "coffer 2026-11 chunk id key v1";
const CTX_CHUNKER: &str = "coffer 2026-11 chunker seed v1";
const CTX_REPORT: &str = "coffer 2026-11 report mac key v1";
const CTX_AES_SUBKEY: &str = "coffer 2026-11 aes-256-gcm message subkey v1";
const CTX_RECOVERY: &str = "coffer 2026-11 recovery key wrap v1";

const CIPHERS: [Cipher; 2] = [Cipher::Aes256Gcm, Cipher::XChaCha20Poly1305];
const NS: i64 = 1_764_288_000_000_000_000;

// ---------------------------------------------------------------------------------------------
// Reading the document
// ---------------------------------------------------------------------------------------------

/// Extracts the one ```vectors block: `name = hex` lines, blank lines and `#` comments.
fn parse(doc: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut blocks = 0;
    let mut inside = false;
    for (n, line) in doc.lines().enumerate() {
        let line = line.trim();
        if !inside {
            if line == "```vectors" {
                blocks += 1;
                inside = true;
            }
            continue;
        }
        if line == "```" {
            inside = false;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("design.md line {}: not `name = hex`", n + 1));
        let bytes = hex::decode(value.trim())
            .unwrap_or_else(|e| panic!("design.md line {}: bad hex: {e}", n + 1));
        assert!(
            out.insert(name.trim().to_string(), bytes).is_none(),
            "design.md line {}: vector {name} appears twice",
            n + 1
        );
    }
    assert!(!inside, "the vectors block in design.md is not closed");
    assert_eq!(
        blocks, 1,
        "design.md must hold exactly one ```vectors block"
    );
    out
}

fn vectors() -> &'static BTreeMap<String, Vec<u8>> {
    static V: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/design.md");
        let doc = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(&doc)
    })
}

fn v(name: &str) -> &'static [u8] {
    assert!(NAMES.contains(&name), "test bug: {name} is not in NAMES");
    vectors()
        .get(name)
        .unwrap_or_else(|| panic!("vector {name} is missing from design.md"))
}

fn v32(name: &str) -> [u8; 32] {
    v(name)
        .try_into()
        .unwrap_or_else(|_| panic!("vector {name} must be 32 bytes"))
}

// ---------------------------------------------------------------------------------------------
// Keys and the specification's primitives, rebuilt independently of coffer::crypto
// ---------------------------------------------------------------------------------------------

fn master() -> MasterKey {
    SecretKey::from_bytes(v32("master_key"))
}

/// The vectors' keys. The vectors form a format 1 repository; `*_v2` vectors are of format 2.
fn keys(cipher: Cipher) -> Keys {
    Keys::derive(&master(), cipher).for_format(1)
}

fn keys_v2(cipher: Cipher) -> Keys {
    Keys::derive(&master(), cipher).for_format(2)
}

fn other(cipher: Cipher) -> Cipher {
    match cipher {
        Cipher::Aes256Gcm => Cipher::XChaCha20Poly1305,
        Cipher::XChaCha20Poly1305 => Cipher::Aes256Gcm,
    }
}

/// Whether `m` is the vectors' master key, judged by everything derived from it (the raw
/// bytes of a key are not exposed by the library).
fn is_vector_master(m: &MasterKey) -> bool {
    let k = Keys::derive(m, Cipher::Aes256Gcm).for_format(1);
    k.chunker_seed() == v32("subkey.chunker_seed")
        && k.blob_id(v("input")) == v32("blob_id.input")
        && k.report_mac(v("input")) == v32("report_mac.input")
}

/// `K_msg = BLAKE3-keyed(BLAKE3-derive_key(CTX_AES_SUBKEY, key), nonce[0..12])`.
fn aes_message_key(key: &[u8; 32], nonce: &[u8]) -> [u8; 32] {
    let derivation = blake3::derive_key(CTX_AES_SUBKEY, key);
    *blake3::keyed_hash(&derivation, &nonce[..12]).as_bytes()
}

/// Opens `nonce[24] ‖ ciphertext ‖ tag[16]` exactly as design.md "Sealing" describes.
fn spec_open(cipher: Cipher, key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 40 {
        return None;
    }
    let nonce: [u8; 24] = sealed[..24].try_into().unwrap();
    let tag: [u8; 16] = sealed[sealed.len() - 16..].try_into().unwrap();
    let mut buf = sealed[24..sealed.len() - 16].to_vec();
    let ok = match cipher {
        Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into())
            .decrypt_inout_detached(
                &XNonce::from(nonce),
                ad,
                buf.as_mut_slice().into(),
                &tag.into(),
            )
            .is_ok(),
        Cipher::Aes256Gcm => {
            let sub = aes_message_key(key, &nonce);
            let gcm_nonce: [u8; 12] = nonce[12..].try_into().unwrap();
            Aes256Gcm::new(&sub.into())
                .decrypt_inout_detached(
                    &gcm_nonce.into(),
                    ad,
                    buf.as_mut_slice().into(),
                    &tag.into(),
                )
                .is_ok()
        }
    };
    ok.then_some(buf)
}

fn blob_ad(kind: u8, id: &[u8; 32]) -> Vec<u8> {
    let mut ad = b"coffer blob v1\0".to_vec();
    ad.push(kind);
    ad.extend_from_slice(id);
    assert_eq!(ad.len(), 48);
    ad
}

/// The library's CBOR encoding, checked against the vectors' fixed bytes.
fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    coffer::cbor::encode("vector", value).unwrap()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Applies every flip of `mask` to every byte of `bytes` (or the given positions) and asserts
/// that `accepted` refuses each altered copy.
fn assert_flips_detected(
    what: &str,
    bytes: &[u8],
    positions: impl IntoIterator<Item = usize>,
    masks: &[u8],
    accepted: impl Fn(&[u8]) -> bool,
) {
    assert!(
        accepted(bytes),
        "{what}: the unaltered vector must be accepted"
    );
    for i in positions {
        for &mask in masks {
            let mut copy = bytes.to_vec();
            copy[i] ^= mask;
            assert!(
                !accepted(&copy),
                "{what}: byte {i} xor {mask:#04x} was not detected"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixed inputs of design.md, as structures
// ---------------------------------------------------------------------------------------------

fn file_content() -> Vec<u8> {
    [v("blob.zstd.plain"), v("blob.raw.plain")].concat()
}

fn expected_tree() -> Tree {
    let content = file_content();
    Tree::new(vec![Node {
        name: b"vector.txt".to_vec(),
        kind: NodeKind::File,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        user: Some("vector-user".into()),
        group: Some("vector-group".into()),
        mtime: Timestamp {
            sec: 1_764_288_000,
            nsec: 123_456_789,
        },
        ctime: Timestamp {
            sec: 1_764_288_001,
            nsec: 0,
        },
        inode: 42,
        device: 2049,
        links: 1,
        size: content.len() as u64,
        content: vec![BlobId(v32("blob.zstd.id")), BlobId(v32("blob.raw.id"))],
        blake3: Some(ObjectId(*blake3::hash(&content).as_bytes())),
        subtree: None,
        target: None,
        rdev: 0,
        xattrs: vec![],
    }])
}

fn expected_snapshot() -> Snapshot {
    Snapshot {
        version: 1,
        time_ns: NS,
        tree: BlobId(v32("tree.id")),
        paths: vec!["/vector.txt".into()],
        hostname: "vector-host".into(),
        username: "vector-user".into(),
        tags: vec!["vectors".into()],
        parent: Some(ObjectId([0xab; 32])),
        program: "coffer 0.1.0".into(),
        summary: Summary {
            files_new: 1,
            files_changed: 0,
            files_unchanged: 0,
            dirs: 0,
            others: 0,
            bytes_read: 310,
            bytes_total: 310,
            blobs_added: 3,
            bytes_added: 1000,
            duration_ns: 5_000_000,
            warnings: 0,
        },
    }
}

fn expected_config(cipher: Cipher) -> Config {
    Config {
        repo_id: v32("repo_id"),
        cipher,
        format: 1,
        chunker: ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        },
        compression: 3,
        pack_size: 32 * 1024 * 1024,
        created_ns: NS,
    }
}

fn expected_info() -> SlotInfo {
    SlotInfo {
        created_ns: NS,
        host: "vector-host".into(),
        user: "vector-user".into(),
    }
}

fn fast_kdf() -> KdfParams {
    KdfParams {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    }
}

/// The blobs of each pack vector: (type, id vector, sealed vector, plaintext vector).
fn pack_blobs(pack: &str) -> Vec<(BlobType, &'static str, &'static str, &'static str)> {
    match pack {
        "pack.data" => vec![
            (
                BlobType::Data,
                "blob.zstd.id",
                "blob.zstd.aes-256-gcm",
                "blob.zstd.plain",
            ),
            (
                BlobType::Data,
                "blob.raw.id",
                "blob.raw.aes-256-gcm",
                "blob.raw.plain",
            ),
        ],
        "pack.tree" => vec![(BlobType::Tree, "tree.id", "tree.aes-256-gcm", "tree.plain")],
        _ => unreachable!(),
    }
}

fn expected_entries(pack: &str) -> Vec<PackEntry> {
    let mut offset = 0u32;
    pack_blobs(pack)
        .into_iter()
        .map(|(kind, id, sealed, plain)| {
            let e = PackEntry {
                kind,
                id: BlobId(v32(id)),
                offset,
                length: v(sealed).len() as u32,
                raw_length: v(plain).len() as u32,
            };
            offset += e.length;
            e
        })
        .collect()
}

fn expected_index() -> Vec<IndexedPack> {
    ["pack.data", "pack.tree"]
        .into_iter()
        .map(|p| IndexedPack {
            id: ObjectId(v32(&format!("{p}.id"))),
            size: v(p).len() as u64,
            entries: expected_entries(p),
        })
        .collect()
}

/// Authenticates a whole pack the way `check --read-data` does, except for its name.
fn pack_verifies(keys: &Keys, bytes: &[u8], expected: &[PackEntry]) -> bool {
    let Ok(entries) = read_header(keys, bytes) else {
        return false;
    };
    entries == expected
        && entries.iter().all(|e| {
            let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            open_blob(keys, e.kind, &e.id, sealed).is_ok()
        })
}

fn slot_yields_master(bytes: &[u8], secret: &str) -> bool {
    let Ok(slot) = keyslot::decode(bytes) else {
        return false;
    };
    match slot.unlock(&Passphrase::new(secret.into())) {
        Ok(Some(m)) => is_vector_master(&m) && slot.info(&keys(Cipher::Aes256Gcm)).is_ok(),
        _ => false,
    }
}

fn recovery_string() -> String {
    let hex = hex::encode(v("keyslot.recovery.key"));
    (0..8)
        .map(|i| &hex[i * 8..i * 8 + 8])
        .collect::<Vec<_>>()
        .join("-")
}

// ---------------------------------------------------------------------------------------------
// Replays
// ---------------------------------------------------------------------------------------------

#[test]
fn vector_set_is_complete() {
    let have: BTreeSet<&str> = vectors().keys().map(String::as_str).collect();
    let want: BTreeSet<&str> = NAMES.iter().copied().collect();
    let missing: Vec<_> = want.difference(&have).collect();
    let unknown: Vec<_> = have.difference(&want).collect();
    assert!(
        missing.is_empty(),
        "vectors missing from design.md: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "unknown vectors in design.md: {unknown:?}"
    );
    assert_eq!(NAMES.len(), want.len(), "test bug: NAMES has duplicates");
}

#[test]
fn parser_rejects_malformed_blocks() {
    let ok = "x\n```vectors\n# c\n\na = 00ff\n```\n";
    assert_eq!(parse(ok)["a"], vec![0, 255]);
    for bad in [
        "no block",
        "```vectors\na = 0\n```\n",
        "```vectors\na = zz\n```\n",
        "```vectors\na 00\n```\n",
        "```vectors\na = 00\na = 01\n```\n",
        "```vectors\na = 00\n",
        "```vectors\n```\n```vectors\n```\n",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
}

#[test]
fn derived_keys() {
    let m = v32("master_key");
    assert_eq!(m, std::array::from_fn::<u8, 32, _>(|i| i as u8));
    assert_eq!(v("input"), b"coffer test vector");
    for cipher in CIPHERS {
        let k = keys(cipher);
        assert_eq!(k.cipher(), cipher);
        assert_eq!(k.chunker_seed(), v32("subkey.chunker_seed"));
        assert_eq!(k.blob_id(v("input")), v32("blob_id.input"));
        assert_eq!(keys_v2(cipher).blob_id(v("input")), v32("blob_id_v2.input"));
        assert_eq!(k.report_mac(v("input")), v32("report_mac.input"));
    }
    // Independently, from the context strings of design.md "Derived keys".
    let data = blake3::derive_key(CTX_DATA, &m);
    let chunk_id = blake3::derive_key(CTX_CHUNK_ID, &m);
    let report = blake3::derive_key(CTX_REPORT, &m);
    assert_eq!(data, v32("subkey.data"));
    assert_eq!(chunk_id, v32("subkey.chunk_id"));
    assert_eq!(
        blake3::derive_key(CTX_CHUNKER, &m),
        v32("subkey.chunker_seed")
    );
    assert_eq!(report, v32("subkey.report_mac_key"));
    assert_eq!(
        blake3::derive_key(CTX_AES_SUBKEY, &data),
        v32("subkey.aes_message_derivation")
    );
    assert_eq!(
        blake3::keyed_hash(&chunk_id, v("input")).as_bytes(),
        &v32("blob_id.input")
    );
    let digest = blake3::hash(v("input"));
    assert_eq!(
        blake3::keyed_hash(&chunk_id, digest.as_bytes()).as_bytes(),
        &v32("blob_id_v2.input")
    );
    assert_eq!(
        blake3::keyed_hash(&report, v("input")).as_bytes(),
        &v32("report_mac.input")
    );
    let all: BTreeSet<[u8; 32]> = [
        data,
        chunk_id,
        report,
        v32("subkey.chunker_seed"),
        v32("subkey.aes_message_derivation"),
    ]
    .into();
    assert_eq!(all.len(), 5, "subkeys must be distinct");
}

#[test]
fn blobs() {
    let data_key = v32("subkey.data");
    for (case, flag) in [("zstd", 1u8), ("raw", 0u8)] {
        let plain = v(&format!("blob.{case}.plain"));
        let id = v32(&format!("blob.{case}.id"));
        assert_eq!(keys(Cipher::Aes256Gcm).blob_id(plain), id);
        assert_eq!(
            blake3::keyed_hash(&v32("subkey.chunk_id"), plain).as_bytes(),
            &id
        );
        for cipher in CIPHERS {
            let k = keys(cipher);
            let sealed = v(&format!("blob.{case}.{}", cipher.name()));
            assert_eq!(
                open_blob(&k, BlobType::Data, &BlobId(id), sealed).unwrap(),
                plain
            );
            assert!(open_blob(&k, BlobType::Tree, &BlobId(id), sealed).is_err());
            assert!(open_blob(&k, BlobType::Data, &BlobId([0; 32]), sealed).is_err());
            assert!(open_blob(&keys(other(cipher)), BlobType::Data, &BlobId(id), sealed).is_err());
            // Independently: AEAD with the blob AD, flag byte, zstd.
            let payload = spec_open(cipher, &data_key, &blob_ad(0, &id), sealed)
                .unwrap_or_else(|| panic!("blob.{case}.{} does not open", cipher.name()));
            assert_eq!(sealed.len(), payload.len() + 40);
            assert_eq!(payload[0], flag, "compression flag of blob.{case}");
            let body = &payload[1..];
            match flag {
                1 => {
                    assert_eq!(zstd::stream::decode_all(body).unwrap(), plain);
                    assert!(body.len() < plain.len() - plain.len() / 32);
                }
                _ => {
                    assert_eq!(body, plain);
                    assert!(plain.len() < 64, "short plaintexts are stored raw");
                }
            }
            // Sealing again gives a fresh nonce but the same plaintext back.
            let again = seal_blob(&k, BlobType::Data, &BlobId(id), plain, 3).unwrap();
            assert_ne!(again[..24], sealed[..24]);
            assert_eq!(again.len(), sealed.len());
            assert_eq!(
                open_blob(&k, BlobType::Data, &BlobId(id), &again).unwrap(),
                plain
            );
        }
    }
    let sealed = v("blob.zstd.aes-256-gcm");
    assert_eq!(
        aes_message_key(&data_key, &sealed[..24]),
        v32("blob.zstd.aes-256-gcm.message_key")
    );
}

#[test]
fn tree() {
    let plain = v("tree.plain");
    let id = v32("tree.id");
    let k = keys(Cipher::Aes256Gcm);
    assert_eq!(k.blob_id(plain), id);
    let sealed = v("tree.aes-256-gcm");
    assert_eq!(
        open_blob(&k, BlobType::Tree, &BlobId(id), sealed).unwrap(),
        plain
    );
    assert!(open_blob(&k, BlobType::Data, &BlobId(id), sealed).is_err());
    let payload = spec_open(
        Cipher::Aes256Gcm,
        &v32("subkey.data"),
        &blob_ad(1, &id),
        sealed,
    )
    .expect("tree blob opens with the type-1 AD");
    assert_eq!(payload[0], 1, "the tree vector is compressed");
    assert_eq!(zstd::stream::decode_all(&payload[1..]).unwrap(), plain);
    let tree = Tree::decode(plain).unwrap();
    assert_eq!(tree, expected_tree());
    assert_eq!(expected_tree().encode().unwrap(), plain);
    assert_eq!(Tree::decode_for(plain, &k).unwrap(), expected_tree());
    assert_eq!(expected_tree().encode_for(&k).unwrap(), plain);
}

/// Format 2 frames its compressed blobs without zstd's magic number.
#[test]
fn blobs_v2() {
    let plain = v("blob.zstd.plain");
    let k = keys_v2(Cipher::Aes256Gcm);
    let id = v32("blob.zstd_v2.id");
    let digest = blake3::hash(plain);
    assert_eq!(
        blake3::keyed_hash(&v32("subkey.chunk_id"), digest.as_bytes()).as_bytes(),
        &id
    );
    assert_eq!(k.blob_id(plain), id);
    let sealed = v("blob.zstd_v2.aes-256-gcm");
    assert_eq!(
        open_blob(&k, BlobType::Data, &BlobId(id), sealed).unwrap(),
        plain
    );
    // Format 1 keys expect the magic number.
    let v1 = keys(Cipher::Aes256Gcm);
    assert!(open_blob(&v1, BlobType::Data, &BlobId(id), sealed).is_err());
    // Independently: the body is a zstd frame without its first 4 bytes, 28 b5 2f fd.
    let payload = spec_open(
        Cipher::Aes256Gcm,
        &v32("subkey.data"),
        &blob_ad(0, &id),
        sealed,
    )
    .expect("blob.zstd_v2 opens");
    assert_eq!(payload[0], 1);
    let body = &payload[1..];
    assert_ne!(body[..4], [0x28, 0xb5, 0x2f, 0xfd]);
    let framed = [&[0x28, 0xb5, 0x2f, 0xfd][..], body].concat();
    assert_eq!(zstd::stream::decode_all(&framed[..]).unwrap(), plain);
    // 4 bytes shorter than the format 1 blob of the same plaintext.
    assert_eq!(sealed.len() + 4, v("blob.zstd.aes-256-gcm").len());
}

/// A format 2 tree: `vector.txt` holding only `blob.zstd.plain`, one chunk, whose id follows
/// from the file's BLAKE3 and is not stored, with a ctime equal to its mtime, not stored either.
fn expected_tree_v2() -> Tree {
    let plain = v("blob.zstd.plain");
    let k = keys_v2(Cipher::Aes256Gcm);
    let mut tree = expected_tree();
    let node = &mut tree.nodes[0];
    node.size = plain.len() as u64;
    node.blake3 = Some(ObjectId(*blake3::hash(plain).as_bytes()));
    node.content = vec![BlobId(k.blob_id(plain))];
    node.ctime = node.mtime;
    tree
}

#[test]
fn tree_v2() {
    let k = keys_v2(Cipher::Aes256Gcm);
    let plain = v("tree_v2.plain");
    assert_eq!(expected_tree_v2().encode_for(&k).unwrap(), plain);
    assert_eq!(Tree::decode_for(plain, &k).unwrap(), expected_tree_v2());
    // As stored, the node lists no chunk; by the specification, its one chunk's id is
    // BLAKE3-keyed(K_id, blake3) of the node.
    let stored = Tree::decode(plain).unwrap();
    assert!(stored.nodes[0].content.is_empty());
    assert!(!plain.windows(5).any(|w| w == b"ctime"));
    let hash = stored.nodes[0].blake3.unwrap();
    let id = blake3::keyed_hash(&v32("subkey.chunk_id"), &hash.0);
    assert_eq!(
        expected_tree_v2().nodes[0].content,
        [BlobId(*id.as_bytes())]
    );
    // A format 1 repository derives no ids: such a node is corrupt there.
    let v1 = keys(Cipher::Aes256Gcm);
    assert!(Tree::decode_for(plain, &v1).is_err());
}

#[test]
fn packs() {
    let k = keys(Cipher::Aes256Gcm);
    for name in ["pack.data", "pack.tree"] {
        let bytes = v(name);
        let expected = expected_entries(name);
        assert_eq!(ObjectId::of(bytes).0, v32(&format!("{name}.id")));
        assert_eq!(blake3::hash(bytes).as_bytes(), &v32(&format!("{name}.id")));
        assert_eq!(read_header(&k, bytes).unwrap(), expected);
        for (e, (kind, id, sealed, plain)) in expected.iter().zip(pack_blobs(name)) {
            let slice = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(slice, v(sealed), "{name}: blob {sealed} in place");
            assert_eq!(
                open_blob(&k, kind, &BlobId(v32(id)), slice).unwrap(),
                v(plain)
            );
        }
        // Independently: trailer length, sealed header, header encoding, tiling.
        let n = bytes.len();
        let sealed_len = u32_at(bytes, n - 4) as usize;
        let header_start = n - 4 - sealed_len;
        let header = spec_open(
            Cipher::Aes256Gcm,
            &v32("subkey.data"),
            b"coffer pack header v1",
            &bytes[header_start..n - 4],
        )
        .expect("pack header opens");
        let mut want = vec![1u8];
        want.extend_from_slice(&(expected.len() as u32).to_le_bytes());
        for e in &expected {
            want.push(e.kind.code());
            want.extend_from_slice(&e.length.to_le_bytes());
            want.extend_from_slice(&e.raw_length.to_le_bytes());
            want.extend_from_slice(&e.id.0);
        }
        assert_eq!(header, want, "{name}: header plaintext");
        assert_eq!(sealed_len, want.len() + 40);
        assert_eq!(decode_header(&header).unwrap(), expected);
        let blobs_end: u32 = expected.iter().map(|e| e.length).sum();
        assert_eq!(
            blobs_end as usize, header_start,
            "{name}: blobs tile the pack"
        );
        assert!(read_header(&keys(Cipher::XChaCha20Poly1305), bytes).is_err());
    }
}

#[test]
fn index() {
    let sealed = v("index");
    let k = keys(Cipher::Aes256Gcm);
    assert_eq!(ObjectId::of(sealed).0, v32("index.id"));
    assert_eq!(open_index(&k, sealed).unwrap(), expected_index());
    assert!(open_index(&keys(Cipher::XChaCha20Poly1305), sealed).is_err());
    let plain = spec_open(
        Cipher::Aes256Gcm,
        &v32("subkey.data"),
        b"coffer index v1",
        sealed,
    )
    .expect("index opens");
    let mut want = vec![1u8];
    want.extend_from_slice(&(expected_index().len() as u32).to_le_bytes());
    for p in expected_index() {
        want.extend_from_slice(&p.id.0);
        want.extend_from_slice(&p.size.to_le_bytes());
        want.extend_from_slice(&(p.entries.len() as u32).to_le_bytes());
        for e in &p.entries {
            want.push(e.kind.code());
            want.extend_from_slice(&e.offset.to_le_bytes());
            want.extend_from_slice(&e.length.to_le_bytes());
            want.extend_from_slice(&e.raw_length.to_le_bytes());
            want.extend_from_slice(&e.id.0);
        }
    }
    assert_eq!(plain, want, "index plaintext");
    assert_eq!(decode_index(&plain).unwrap(), expected_index());
}

#[test]
fn snapshot() {
    let sealed = v("snapshot");
    let k = keys(Cipher::Aes256Gcm);
    assert_eq!(ObjectId::of(sealed).0, v32("snapshot.id"));
    assert_eq!(Snapshot::open(&k, sealed).unwrap(), expected_snapshot());
    assert!(Snapshot::open(&keys(Cipher::XChaCha20Poly1305), sealed).is_err());
    let plain = spec_open(
        Cipher::Aes256Gcm,
        &v32("subkey.data"),
        b"coffer snapshot v1",
        sealed,
    )
    .expect("snapshot opens");
    assert_eq!(plain, v("snapshot.plain"));
    assert_eq!(cbor(&expected_snapshot()), v("snapshot.plain"));
    assert_eq!(
        Snapshot::decode(v("snapshot.plain")).unwrap(),
        expected_snapshot()
    );
}

#[test]
fn config_objects() {
    assert_eq!(cbor(&expected_config(Cipher::Aes256Gcm)), v("config.plain"));
    for cipher in CIPHERS {
        let bytes = v(&format!("config.{}", cipher.name()));
        assert_eq!(&bytes[..8], b"COFFERRP");
        assert_eq!(u32_at(bytes, 8), 1);
        assert_eq!(bytes[12..44], v32("repo_id"));
        assert_eq!(bytes[44], cipher.code());
        let header = config::read_header(bytes).unwrap();
        assert_eq!(header.repo_id, v32("repo_id"));
        assert_eq!(header.cipher, cipher);
        assert_eq!(
            Config::open(&keys(cipher), bytes).unwrap(),
            expected_config(cipher)
        );
        assert!(Config::open(&keys(other(cipher)), bytes).is_err());
        let plain = spec_open(cipher, &v32("subkey.data"), &bytes[..45], &bytes[45..])
            .expect("config body opens");
        assert_eq!(plain, v("config.plain"));
    }
}

#[test]
fn key_slots() {
    let aes = keys(Cipher::Aes256Gcm);
    let secret = std::str::from_utf8(v("keyslot.passphrase.secret")).unwrap();
    assert_eq!(secret, "coffer test vector");
    assert_eq!(cbor(&expected_info()), v("keyslot.info.plain"));
    let recovery = recovery_string();
    assert_eq!(
        recovery,
        "f0e1d2c3-b4a59687-78695a4b-3c2d1e0f-0f1e2d3c-4b5a6978-8796a5b4-c3d2e1f0"
    );

    for (name, kind, code) in [
        ("keyslot.passphrase", SlotKind::Passphrase, 1u8),
        ("keyslot.recovery", SlotKind::Recovery, 2u8),
    ] {
        let bytes = v(name);
        // The plain header, field by field.
        assert_eq!(&bytes[..8], b"COFFERKS");
        assert_eq!(u32_at(bytes, 8), 1);
        assert_eq!(bytes[12..44], v32("repo_id"));
        assert_eq!(bytes[44], code);
        assert_eq!(
            [u32_at(bytes, 45), u32_at(bytes, 49), u32_at(bytes, 53)],
            [8192, 1, 1]
        );
        let salt = &bytes[57..89];
        let slot = keyslot::decode(bytes).unwrap();
        assert_eq!(slot.repo_id, v32("repo_id"));
        assert_eq!(slot.kind, kind);
        assert_eq!(slot.kdf, fast_kdf());
        assert_eq!(slot.info(&aes).unwrap(), expected_info());
        assert!(slot.info(&keys(Cipher::XChaCha20Poly1305)).is_err());

        // Independently: the KEK, the wrapped master key and the sealed info.
        let kek: [u8; 32] = match kind {
            SlotKind::Passphrase => {
                let params = argon2::Params::new(8192, 1, 1, Some(32)).unwrap();
                let argon = argon2::Argon2::new(
                    argon2::Algorithm::Argon2id,
                    argon2::Version::V0x13,
                    params,
                );
                let mut out = [0u8; 32];
                argon
                    .hash_password_into(secret.as_bytes(), salt, &mut out)
                    .unwrap();
                out
            }
            SlotKind::Recovery => {
                let material = [v("keyslot.recovery.key"), salt].concat();
                blake3::derive_key(CTX_RECOVERY, &material)
            }
        };
        assert_eq!(kek, v32(&format!("{name}.kek")));
        let wrapped = &bytes[89..161];
        let unwrapped = spec_open(Cipher::XChaCha20Poly1305, &kek, &bytes[..89], wrapped)
            .expect("the wrapped master key opens with the KEK");
        assert_eq!(unwrapped, v("master_key"));
        let info = spec_open(
            Cipher::Aes256Gcm,
            &v32("subkey.data"),
            &bytes[..89],
            &bytes[161..],
        )
        .expect("the slot info opens with the data key");
        assert_eq!(info, v("keyslot.info.plain"));
    }

    // Unlocking through the API.
    let pass = keyslot::decode(v("keyslot.passphrase")).unwrap();
    let m = pass
        .unlock(&Passphrase::new(secret.into()))
        .unwrap()
        .expect("passphrase opens its slot");
    assert!(is_vector_master(&m));
    for wrong in ["coffer test vectoR", "", recovery.as_str()] {
        assert!(
            pass.unlock(&Passphrase::new(wrong.into()))
                .unwrap()
                .is_none()
        );
    }
    let rec = keyslot::decode(v("keyslot.recovery")).unwrap();
    let no_dashes = recovery.replace('-', "");
    let spaced = recovery.replace('-', " ");
    for typed in [recovery.clone(), recovery.to_uppercase(), no_dashes, spaced] {
        let m = rec
            .unlock(&Passphrase::new(typed.clone()))
            .unwrap()
            .unwrap_or_else(|| panic!("{typed:?} opens the recovery slot"));
        assert!(is_vector_master(&m));
    }
    assert!(
        rec.unlock(&Passphrase::new(secret.into()))
            .unwrap()
            .is_none()
    );
}

#[test]
fn chunker_golden_lengths() {
    let lengths: Vec<usize> = v("chunker.golden.lengths")
        .chunks(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("u32 LE lengths")) as usize)
        .collect();
    let params = ChunkerParams {
        min: 1024,
        avg: 4096,
        max: 16384,
    };
    let chunker = Chunker::new(params, &[1; 32]);
    let mut data = vec![0u8; 64 * 1024];
    let mut h = blake3::Hasher::new();
    h.update(&9u64.to_le_bytes());
    h.finalize_xof().fill(&mut data);
    let mut stream = ChunkStream::new(&chunker, &data[..]);
    let mut got = Vec::new();
    while let Some(chunk) = stream.next_chunk().unwrap() {
        got.push(chunk.len());
    }
    assert_eq!(got, lengths);
    assert_eq!(lengths.iter().sum::<usize>(), data.len());
    let (last, rest) = lengths.split_last().unwrap();
    assert!(rest.iter().all(|&l| l > 1024 && l <= 16384));
    assert!(*last <= 16384);
}

#[test]
fn vectors_form_a_restorable_repository() {
    let k = keys(Cipher::Aes256Gcm);
    let mut index = Index::default();
    for p in open_index(&k, v("index")).unwrap() {
        index.add_pack(&p);
    }
    let packs: BTreeMap<ObjectId, &[u8]> = ["pack.data", "pack.tree"]
        .into_iter()
        .map(|p| (ObjectId::of(v(p)), v(p)))
        .collect();
    let read = |kind: BlobType, id: &BlobId| {
        let loc = index.get(id).expect("blob is indexed");
        assert_eq!(loc.kind, kind);
        let pack = packs[&loc.pack];
        let sealed = &pack[loc.offset as usize..(loc.offset + loc.length) as usize];
        assert_eq!(loc.pack_size, pack.len() as u64);
        open_blob(&k, kind, id, sealed).unwrap()
    };
    let snap = Snapshot::open(&k, v("snapshot")).unwrap();
    let tree = Tree::decode(&read(BlobType::Tree, &snap.tree)).unwrap();
    let node = tree.find(b"vector.txt").expect("file in the root tree");
    let content: Vec<u8> = node
        .content
        .iter()
        .flat_map(|id| read(BlobType::Data, id))
        .collect();
    assert_eq!(content, file_content());
    assert_eq!(content.len() as u64, node.size);
    assert_eq!(
        Some(ObjectId(*blake3::hash(&content).as_bytes())),
        node.blake3
    );
}

// ---------------------------------------------------------------------------------------------
// Tampering: every flipped byte of every sealed vector must be detected
// ---------------------------------------------------------------------------------------------

const MASKS: &[u8] = &[0x01, 0x80, 0xff];

#[test]
fn flipped_blob_bytes_are_detected() {
    for case in ["zstd", "raw"] {
        let id = BlobId(v32(&format!("blob.{case}.id")));
        for cipher in CIPHERS {
            let k = keys(cipher);
            let name = format!("blob.{case}.{}", cipher.name());
            let sealed = v(&name);
            assert_flips_detected(&name, sealed, 0..sealed.len(), MASKS, |b| {
                open_blob(&k, BlobType::Data, &id, b).is_ok()
            });
        }
    }
    let k = keys(Cipher::Aes256Gcm);
    let id = BlobId(v32("tree.id"));
    let sealed = v("tree.aes-256-gcm");
    assert_flips_detected("tree", sealed, 0..sealed.len(), MASKS, |b| {
        open_blob(&k, BlobType::Tree, &id, b).is_ok()
    });
}

#[test]
fn flipped_pack_bytes_are_detected() {
    let k = keys(Cipher::Aes256Gcm);
    for name in ["pack.data", "pack.tree"] {
        let bytes = v(name);
        let expected = expected_entries(name);
        let id = ObjectId(v32(&format!("{name}.id")));
        // Without looking at the name: the header or a blob fails to authenticate.
        assert_flips_detected(name, bytes, 0..bytes.len(), MASKS, |b| {
            pack_verifies(&k, b, &expected)
        });
        // And the name no longer matches.
        assert_flips_detected(name, bytes, 0..bytes.len(), &[0x01], |b| {
            ObjectId::of(b) == id
        });
    }
}

#[test]
fn flipped_index_bytes_are_detected() {
    let k = keys(Cipher::Aes256Gcm);
    let sealed = v("index");
    assert_flips_detected("index", sealed, 0..sealed.len(), MASKS, |b| {
        open_index(&k, b).is_ok()
    });
}

#[test]
fn flipped_snapshot_bytes_are_detected() {
    let k = keys(Cipher::Aes256Gcm);
    let sealed = v("snapshot");
    assert_flips_detected("snapshot", sealed, 0..sealed.len(), MASKS, |b| {
        Snapshot::open(&k, b).is_ok()
    });
}

#[test]
fn flipped_config_bytes_are_detected() {
    for cipher in CIPHERS {
        let k = keys(cipher);
        let name = format!("config.{}", cipher.name());
        let bytes = v(&name);
        assert_flips_detected(&name, bytes, 0..bytes.len(), MASKS, |b| {
            Config::open(&k, b).is_ok()
        });
    }
}

#[test]
fn flipped_key_slot_bytes_are_detected() {
    // Every byte once; each accepted candidate may cost an Argon2id run (8 MiB, one pass).
    let secret = std::str::from_utf8(v("keyslot.passphrase.secret")).unwrap();
    let bytes = v("keyslot.passphrase");
    assert_flips_detected("keyslot.passphrase", bytes, 0..bytes.len(), &[0x01], |b| {
        slot_yields_master(b, secret)
    });
    let recovery = recovery_string();
    let bytes = v("keyslot.recovery");
    assert_flips_detected("keyslot.recovery", bytes, 0..bytes.len(), MASKS, |b| {
        slot_yields_master(b, &recovery)
    });
}

/// The vectors' objects, stored under their names, are a format 1 repository: this build opens
/// it, restores it, and backs up into it in format 1 (ids keyed over the plaintext, every file
/// listing its chunks), so the new snapshot deduplicates against the old ones.
#[test]
fn a_format_1_repository_stays_format_1() {
    use coffer::backup::{BackupOptions, NoProgress, backup};
    use coffer::repo::{Repository, pack_name};
    use coffer::restore::{RestoreOptions, restore};
    use coffer::store::{Location, Store};

    let location = Location::parse("memory://vectors-format-1").unwrap();
    let store = Store::open(&location, true).unwrap();
    let put = |name: String, vector: &str| {
        store.put_object(&name, v(vector).to_vec().into()).unwrap();
    };
    put("config".into(), "config.aes-256-gcm");
    put(
        format!("keys/{}", ObjectId::of(v("keyslot.passphrase"))),
        "keyslot.passphrase",
    );
    put(format!("index/{}", ObjectId::of(v("index"))), "index");
    put(
        format!("snapshots/{}", ObjectId::of(v("snapshot"))),
        "snapshot",
    );
    for pack in ["pack.data", "pack.tree"] {
        put(pack_name(&ObjectId::of(v(pack))), pack);
    }
    let secret = std::str::from_utf8(v("keyslot.passphrase.secret")).unwrap();
    let mut repo = Repository::open(store, &Passphrase::new(secret.into())).unwrap();
    assert_eq!(repo.config().format, 1);

    let tmp = tempfile::tempdir().unwrap();
    let (_, snap) = repo.find_snapshot("latest").unwrap();
    let opts = |target: &str| RestoreOptions {
        target: tmp.path().join(target),
        ..Default::default()
    };
    let restored = restore(&repo, &snap.tree, &opts("old")).unwrap();
    assert!(restored.errors.is_empty(), "{restored:?}");
    assert_eq!(
        std::fs::read(tmp.path().join("old/vector.txt")).unwrap(),
        file_content()
    );

    // A new backup of one small file (one chunk) and of the vectors' file content.
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small"), b"one chunk in a format 1 repository").unwrap();
    std::fs::write(src.join("vector.txt"), file_content()).unwrap();
    let paths = vec![src.clone()];
    let out = backup(
        &mut repo,
        BackupOptions {
            paths,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    let k = keys(Cipher::Aes256Gcm);
    let mut files = 0;
    repo.walk(&out.snapshot.tree, &mut |_, node| {
        if node.kind == NodeKind::File {
            files += 1;
            assert_eq!(node.content.len(), 1, "small files are one chunk");
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(files, 2);
    // Stored as format 1 writes it: the chunk listed, its id keyed over the plaintext.
    let mut id = out.snapshot.tree;
    for name in src.iter().skip(1) {
        let tree = Tree::decode(&repo.read_blob(BlobType::Tree, &id).unwrap()).unwrap();
        id = tree.find(name.as_encoded_bytes()).unwrap().subtree.unwrap();
    }
    let tree = Tree::decode(&repo.read_blob(BlobType::Tree, &id).unwrap()).unwrap();
    let small = tree.find(b"small").unwrap();
    let plain = b"one chunk in a format 1 repository";
    assert_eq!(
        small.content,
        [BlobId(
            *blake3::keyed_hash(&v32("subkey.chunk_id"), plain).as_bytes()
        )]
    );
    assert_eq!(small.content, [BlobId(k.blob_id(plain))]);

    let restored = restore(&repo, &out.snapshot.tree, &opts("new")).unwrap();
    assert!(restored.errors.is_empty(), "{restored:?}");
    let new_src = tmp.path().join("new").join(src.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(new_src.join("small")).unwrap(), plain);
    assert_eq!(
        std::fs::read(new_src.join("vector.txt")).unwrap(),
        file_content()
    );
}
