//! Throughput of each backup stage on its own: chunking, chunk ids, compression, sealing,
//! encoding and decoding the trees that record directories, and the kernel's side: reading
//! a file from the page cache and writing a pack file.
//!
//! `cargo bench --bench stages` (add `-- --quick` for a rough pass, or a filter such as
//! `-- seal`). Numbers are bytes of plaintext in per second.

use std::hint::black_box;
use std::time::Duration;

use coffer::blob::{BlobType, seal_blob};
use coffer::chunker::{ChunkStream, Chunker, ChunkerParams};
use coffer::crypto::{Cipher, Keys, SecretKey};
use coffer::id::{BlobId, ObjectId};
use coffer::store::{Location, Store};
use coffer::tree::{Node, NodeKind, Timestamp, Tree};
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};

mod common;
use common::{compressible, pseudo_random};

const MIB: usize = 1024 * 1024;

fn keys(cipher: Cipher) -> Keys {
    Keys::derive(&SecretKey::from_bytes([7; 32]), cipher)
}

/// Small, quick settings: every stage is steady after a few iterations.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, bytes: usize) {
    group
        .throughput(Throughput::Bytes(bytes as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn chunking(c: &mut Criterion) {
    let keys = keys(Cipher::Aes256Gcm);
    let chunker = Chunker::new(ChunkerParams::default(), &keys.chunker_seed());
    let mut group = c.benchmark_group("chunking");
    configure(&mut group, 64 * MIB);
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, data) in [
        ("random_64MiB", pseudo_random(64 * MIB, 1)),
        ("compressible_64MiB", compressible(64 * MIB, 1)),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut stream = ChunkStream::new(&chunker, &data[..]);
                let mut chunks = 0usize;
                while let Some(chunk) = stream.next_chunk().expect("reading a slice") {
                    black_box(chunk);
                    chunks += 1;
                }
                chunks
            })
        });
    }

    // Real trees hold many small files: one ChunkStream per file shows the per-file cost.
    let small: Vec<Vec<u8>> = (0..512).map(|i| pseudo_random(8 * 1024, i)).collect();
    group.throughput(Throughput::Bytes(512 * 8 * 1024));
    group.bench_function("small_files_512x8KiB", |b| {
        b.iter(|| {
            let mut chunks = 0usize;
            for file in &small {
                let mut stream = ChunkStream::new(&chunker, &file[..]);
                while let Some(chunk) = stream.next_chunk().expect("reading a slice") {
                    black_box(chunk);
                    chunks += 1;
                }
            }
            chunks
        })
    });
    group.finish();
}

fn hashing(c: &mut Criterion) {
    let keys = keys(Cipher::Aes256Gcm);
    let data = pseudo_random(MIB, 2);
    let mut group = c.benchmark_group("hash_1MiB");
    configure(&mut group, MIB);
    group.bench_function("keyed_blob_id", |b| {
        b.iter(|| keys.blob_id(black_box(&data)))
    });
    group.bench_function("blake3_plain", |b| {
        b.iter(|| blake3::hash(black_box(&data)))
    });
    group.finish();
}

fn compression(c: &mut Criterion) {
    let keys = keys(Cipher::Aes256Gcm);
    let mut group = c.benchmark_group("seal_blob_1MiB");
    configure(&mut group, MIB);
    for (kind, data) in [
        ("compressible", compressible(MIB, 3)),
        ("incompressible", pseudo_random(MIB, 3)),
    ] {
        let id = BlobId(keys.blob_id(&data));
        for level in [1, 3] {
            group.bench_function(format!("zstd{level}_{kind}"), |b| {
                b.iter(|| {
                    seal_blob(&keys, BlobType::Data, &id, black_box(&data), level).expect("sealing")
                })
            });
        }
    }
    group.finish();
}

fn sealing(c: &mut Criterion) {
    let data = pseudo_random(MIB, 4);
    let mut group = c.benchmark_group("aead_1MiB");
    configure(&mut group, MIB);
    for cipher in [Cipher::Aes256Gcm, Cipher::XChaCha20Poly1305] {
        let keys = keys(cipher);
        let sealed = keys.seal(b"bench", &data).expect("sealing");
        group.bench_function(format!("seal_{}", cipher.name()), |b| {
            b.iter(|| keys.seal(b"bench", black_box(&data)).expect("sealing"))
        });
        group.bench_function(format!("open_{}", cipher.name()), |b| {
            b.iter(|| keys.open(b"bench", black_box(&sealed)).expect("opening"))
        });
    }
    group.finish();
}

/// A directory of 100 files of 1–3 chunks each, with owner names, as a backup records it.
fn directory() -> Tree {
    let nodes = (0..100u64)
        .map(|i| Node {
            name: format!("file-{i:05}.txt").into_bytes(),
            kind: NodeKind::File,
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            user: Some("alice".into()),
            group: Some("staff".into()),
            mtime: Timestamp {
                sec: 1_790_000_000 + i as i64,
                nsec: 123_456_789,
            },
            ctime: Timestamp {
                sec: 1_790_000_000 + i as i64,
                nsec: 987_654_321,
            },
            inode: 1_000_000 + i,
            device: 2049,
            links: 1,
            size: 6000 + i * 977,
            content: (0..1 + i % 3)
                .map(|c| BlobId(ObjectId::of(&[i as u8, c as u8]).0))
                .collect(),
            blake3: Some(ObjectId::of(&i.to_le_bytes())),
            subtree: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
        })
        .collect();
    Tree::new(nodes)
}

fn trees(c: &mut Criterion) {
    let tree = directory();
    let encoded = tree.encode().expect("encoding");
    let mut group = c.benchmark_group("tree_100_files");
    configure(&mut group, encoded.len());
    group.bench_function("encode", |b| {
        b.iter(|| black_box(&tree).encode().expect("encoding"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| Tree::decode(black_box(&encoded)).expect("decoding"))
    });
    group.finish();
}

/// The I/O a backup of incompressible data cannot avoid: reading each file once from the page
/// cache, and writing (and syncing) each pack once, the way a backup does.
fn io(c: &mut Criterion) {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = pseudo_random(64 * MIB, 5);
    let file = dir.path().join("input");
    std::fs::write(&file, &data).expect("writing the input");
    let mut group = c.benchmark_group("io");
    configure(&mut group, 64 * MIB);
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    let mut block = vec![0u8; MIB];
    group.bench_function("read_file_64MiB", |b| {
        b.iter(|| {
            let mut f = std::fs::File::open(&file).expect("opening the input");
            while f.read(&mut block).expect("reading") > 0 {}
        })
    });
    // As a backup writes a pack to a local directory: in the background, synced.
    let pack = bytes::Bytes::copy_from_slice(&data[..32 * MIB]);
    let parts: Vec<bytes::Bytes> = (0..32)
        .map(|i| pack.slice(i * MIB..(i + 1) * MIB))
        .collect();
    let repo = dir.path().join("repo");
    let store = Store::open(&Location::Directory(repo.clone()), true).expect("opening a store");
    group.throughput(Throughput::Bytes(pack.len() as u64));
    group.bench_function("write_pack_32MiB", |b| {
        b.iter(|| {
            let mut stream = store.stream_object("data").expect("starting a pack");
            parts.iter().for_each(|part| stream.push(part.clone()));
            let id = store
                .wait(stream.finish(|id| format!("data/{id}")))
                .expect("writing a pack");
            std::fs::remove_file(repo.join(format!("data/{id}"))).expect("removing a pack");
        })
    });
    group.finish();
}

criterion_group!(stages, chunking, hashing, compression, sealing, trees, io);
criterion_main!(stages);
