//! End-to-end throughput: a whole backup and restore of a generated 64 MiB tree through a
//! directory repository in a temporary directory (so it includes file reads, fsyncs and the
//! store's writes, but no network).
//!
//! `cargo bench --bench pipeline`. Cases:
//! - `backup_fresh`: into a new, empty repository (chunk, id, compress, seal, pack, write);
//! - `backup_dedup`: again into a repository that already holds everything, without a parent
//!   (every file is read, chunked and hashed, nothing new is stored);
//! - `restore`: the snapshot into a new directory (read, open, verify, write, fsync).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer::backup::{BackupOptions, NoProgress, ParentChoice, backup};
use coffer::id::BlobId;
use coffer::keyslot::{KdfParams, Passphrase};
use coffer::repo::{InitOptions, Repository};
use coffer::restore::{RestoreOptions, restore};
use coffer::store::{Location, Store};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use tempfile::TempDir;

mod common;
use common::{compressible, pseudo_random};

const MIB: usize = 1024 * 1024;

/// Writes the source tree and returns its total size: 6 × 6 MiB random files, 4 × 6 MiB
/// text-like files, and 512 files of 8 KiB (half of each kind) in 16 directories.
fn make_tree(root: &Path) -> u64 {
    let mut total = 0u64;
    let mut write = |path: PathBuf, data: &[u8]| {
        fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        fs::write(&path, data).expect("write source file");
        total += data.len() as u64;
    };
    for i in 0..6 {
        write(
            root.join(format!("media/blob{i}.bin")),
            &pseudo_random(6 * MIB, 100 + i),
        );
    }
    for i in 0..4 {
        write(
            root.join(format!("logs/app{i}.log")),
            &compressible(6 * MIB, 200 + i),
        );
    }
    for i in 0..512u64 {
        let data = if i % 2 == 0 {
            pseudo_random(8 * 1024, 1000 + i)
        } else {
            compressible(8 * 1024, 1000 + i)
        };
        write(root.join(format!("src/d{:02}/f{i:03}", i % 16)), &data);
    }
    total
}

fn new_repo(dir: &Path) -> Repository {
    let store = Store::open(&Location::Directory(dir.to_path_buf()), true).expect("open store");
    let opts = InitOptions {
        kdf: KdfParams {
            memory_kib: 8192,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    };
    Repository::init(store, &Passphrase::new("bench".into()), &opts)
        .expect("init repository")
        .0
}

fn run_backup(repo: &mut Repository, source: &Path) -> BlobId {
    let opts = BackupOptions {
        paths: vec![source.to_path_buf()],
        parent: ParentChoice::None,
        ..Default::default()
    };
    let done = backup(repo, opts, &NoProgress).expect("backup");
    assert!(done.warnings.is_empty(), "warnings: {:?}", done.warnings);
    done.snapshot.tree
}

fn pipeline(c: &mut Criterion) {
    let work = TempDir::new().expect("tempdir");
    let source = work.path().join("source");
    let total = make_tree(&source);

    let mut group = c.benchmark_group("pipeline_64MiB_mixed");
    group
        .throughput(Throughput::Bytes(total))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));

    let mut n = 0u32;
    let mut fresh_dir = || {
        n += 1;
        work.path().join(format!("scratch{n}"))
    };

    group.bench_function("backup_fresh", |b| {
        b.iter_batched(
            || {
                let dir = fresh_dir();
                let repo = new_repo(&dir);
                (dir, repo)
            },
            |(dir, mut repo)| {
                run_backup(&mut repo, &source);
                Scratch(dir, Some(repo))
            },
            BatchSize::PerIteration,
        )
    });

    // One full repository serves the dedup and restore cases.
    let repo_dir = work.path().join("repo");
    let mut repo = new_repo(&repo_dir);
    let root = run_backup(&mut repo, &source);

    group.bench_function("backup_dedup", |b| {
        b.iter(|| run_backup(&mut repo, &source))
    });

    group.bench_function("restore", |b| {
        b.iter_batched(
            &mut fresh_dir,
            |target| {
                let opts = RestoreOptions {
                    target: target.clone(),
                    ..Default::default()
                };
                let done = restore(&repo, &root, &opts).expect("restore");
                assert!(done.errors.is_empty(), "errors: {:?}", done.errors);
                assert_eq!(done.bytes, total);
                Scratch(target, None)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// A directory made by one iteration, removed after timing (criterion drops outputs outside
/// the measured section) so the benchmark does not fill the disk.
struct Scratch(PathBuf, Option<Repository>);

impl Drop for Scratch {
    fn drop(&mut self) {
        drop(self.1.take());
        let _ = fs::remove_dir_all(&self.0);
    }
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
