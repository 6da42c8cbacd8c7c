//! Scale: a repository whose index names 10^7 chunks (about 10 TB of 1 MiB chunks), built
//! synthetically, then opened and backed up into by a fresh process whose peak memory and
//! timings are reported.
//!
//! `cargo bench --bench scale [-- BLOBS]` (default 10,000,000; under `cargo test`, 100,000). The repository holds real,
//! sealed index objects of 50,000 blobs each, as backups write them, naming packs of 32
//! blobs; the packs themselves are not written (only the index is under test), so `check`
//! would report them missing. The measuring process opens the repository (reads, decrypts
//! and sorts the whole index), then backs up 64 MiB of new data (every chunk looked up in
//! the index), and prints wall times and its peak RSS from `getrusage`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use coffer::backup::{BackupOptions, NoProgress, backup};
use coffer::blob::BlobType;
use coffer::id::{BlobId, ObjectId};
use coffer::index::{IndexedPack, seal_index};
use coffer::keyslot::{KdfParams, Passphrase};
use coffer::pack::PackEntry;
use coffer::repo::{InitOptions, Repository};
use coffer::store::{Location, Store};

mod common;

const BLOBS_PER_INDEX: usize = 50_000;
const BLOBS_PER_PACK: usize = 32;
const CHUNK: u32 = 1 << 20;

fn passphrase() -> Passphrase {
    Passphrase::new("scale benchmark".into())
}

fn store(dir: &Path, create: bool) -> Store {
    Store::open(
        &Location::parse(dir.to_str().expect("utf-8 path")).expect("location"),
        create,
    )
    .expect("open store")
}

/// Writes index objects naming `blobs` synthetic chunks.
fn build(dir: &Path, blobs: usize) {
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..InitOptions::default()
    };
    let (repo, _) = Repository::init(store(dir, true), &passphrase(), &opts).expect("init");
    let mut xof = blake3::Hasher::new().update(b"scale").finalize_xof();
    let mut written = 0;
    while written < blobs {
        let n = BLOBS_PER_INDEX.min(blobs - written);
        let packs: Vec<IndexedPack> = (0..n.div_ceil(BLOBS_PER_PACK))
            .map(|p| {
                let count = BLOBS_PER_PACK.min(n - p * BLOBS_PER_PACK);
                let entries = (0..count)
                    .map(|i| {
                        let mut id = [0u8; 32];
                        xof.fill(&mut id);
                        PackEntry {
                            kind: BlobType::Data,
                            id: BlobId(id),
                            offset: i as u32 * CHUNK,
                            length: CHUNK,
                            raw_length: CHUNK,
                        }
                    })
                    .collect();
                let mut id = [0u8; 32];
                xof.fill(&mut id);
                IndexedPack {
                    id: ObjectId(id),
                    size: u64::from(CHUNK) * BLOBS_PER_PACK as u64,
                    entries,
                }
            })
            .collect();
        let sealed = seal_index(repo.keys(), &packs).expect("seal index");
        let name = format!("index/{}", ObjectId::of(&sealed));
        repo.store()
            .put_object(&name, Bytes::from(sealed))
            .expect("write index");
        written += n;
    }
}

/// Opens the repository and backs up 64 MiB of new data; prints what it measured.
fn measure(dir: &Path, source: &Path) {
    let started = Instant::now();
    let mut repo = Repository::open(store(dir, false), &passphrase()).expect("open");
    let opened = started.elapsed();
    let blobs = repo.index().len();
    let started = Instant::now();
    backup(
        &mut repo,
        BackupOptions {
            paths: vec![source.to_path_buf()],
            ..BackupOptions::default()
        },
        &NoProgress,
    )
    .expect("backup");
    let backed_up = started.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    println!(
        "scale: {blobs} blobs indexed; open {:.2} s; backup of 64 MiB {:.2} s; peak RSS {} MiB",
        opened.as_secs_f64(),
        backed_up.as_secs_f64(),
        usage.max_rss() / 1024
    );
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs this without `--bench`: a small smoke run then.
    let smoke = !all.iter().any(|a| a == "--bench");
    let args: Vec<String> = all.into_iter().filter(|a| a != "--bench").collect();
    if let [flag, dir, source] = &args[..]
        && flag == "--measure"
    {
        measure(Path::new(dir), Path::new(source));
        return;
    }
    let blobs: usize = args
        .first()
        .map(|a| a.replace('_', "").parse().expect("BLOBS is a number"))
        .unwrap_or(if smoke { 100_000 } else { 10_000_000 });
    let tmp = tempfile::tempdir().expect("temp dir");
    let (repo, source) = (tmp.path().join("repo"), tmp.path().join("source"));
    let started = Instant::now();
    build(&repo, blobs);
    println!(
        "scale: wrote the index of {blobs} blobs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::create_dir_all(&source).expect("mkdir");
    for i in 0..8u64 {
        let data = [
            common::pseudo_random(4 << 20, i),
            common::compressible(4 << 20, i),
        ]
        .concat();
        std::fs::write(source.join(format!("f{i}")), data).expect("write source");
    }
    // A fresh process, so the peak memory is the open and backup alone; with one malloc
    // arena, as the `coffer` binary sets at start.
    let me: PathBuf = std::env::current_exe().expect("own path");
    let status = std::process::Command::new(me)
        .args(["--measure".as_ref(), repo.as_os_str(), source.as_os_str()])
        .env("MALLOC_ARENA_MAX", "1")
        .status()
        .expect("run the measuring process");
    assert!(status.success(), "measuring process failed");
}
