//! Restore drills: restore a snapshot (or a reproducible sample of it) into a scratch
//! directory, verify it against the snapshot, measure it, judge it against recovery
//! objectives, and store the report in the repository.
//!
//! The sample is chosen by ranking every regular file by BLAKE3(seed ‖ path) and taking the
//! lowest: the same seed and snapshot always give the same sample, whatever the order of the
//! walk. The scratch copy is removed afterwards unless the caller keeps it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::repo::{Repository, host_and_user};
use crate::report::{
    self, DrillReport, Durations, Objectives, SampleFacts, SnapshotFacts, StoredReport, Verdict,
};
use crate::restore::{RestoreOptions, restore};
use crate::snapshot::Snapshot;
use crate::tree::NodeKind;
use crate::verify::{Failure, Selection, Verified, verify_restored};

/// How much of the snapshot to restore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sample {
    /// Everything.
    All,
    /// This percentage of the regular files (rounded up).
    Percent(f64),
    /// This many regular files.
    Files(u64),
}

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// What to restore.
    pub sample: Sample,
    /// Seed of the sample (random if `None`; recorded either way).
    pub seed: Option<u64>,
    /// Scratch directory (must be empty or absent); a new temporary one if `None`.
    pub target: Option<PathBuf>,
    /// Keep the restored copy.
    pub keep: bool,
    /// Recovery time objective.
    pub rto: Option<Duration>,
    /// Recovery point objective.
    pub rpo: Option<Duration>,
}

/// A finished drill.
#[derive(Debug)]
pub struct DrillOutcome {
    /// The stored report.
    pub report: StoredReport,
    /// Where the restored copy is, if it was kept.
    pub kept_at: Option<PathBuf>,
}

struct FileEntry {
    path: Vec<u8>,
    size: u64,
}

/// Runs a drill of snapshot `id` and stores its report.
pub fn drill(
    repo: &Repository,
    id: ObjectId,
    snap: &Snapshot,
    opts: &DrillOptions,
) -> Result<DrillOutcome> {
    let started_ns = crate::clock::now_ns();
    let clock = Instant::now();
    let files = list_files(repo, snap)?;
    let seed = match opts.seed {
        Some(s) => s,
        None => u64::from_le_bytes(crate::clock::random_bytes()?),
    };
    let (only, selected_files, selected_bytes) = select(&files, opts.sample, seed);
    let scratch = scratch_dir(opts.target.as_deref())?;

    // Every restored file is read back below.
    let restore_opts = RestoreOptions {
        target: scratch.clone(),
        only: only.clone(),
        read_back: true,
        ..Default::default()
    };
    let restored = restore(repo, &snap.tree, &restore_opts);
    let restore_seconds = clock.elapsed().as_secs_f64();
    let mut failures = Vec::new();
    let mut checked = Verified::default();
    let verify_clock = Instant::now();
    match restored {
        Ok(out) => {
            let skip: HashSet<String> = out.errors.iter().map(|e| e.path.clone()).collect();
            failures.extend(out.errors.into_iter().map(|e| Failure {
                path: e.path,
                check: "restore".into(),
                expected: "intact data in the repository".into(),
                found: e.message,
            }));
            let (counts, found) = verify_restored(
                repo,
                &snap.tree,
                &scratch,
                &Selection {
                    only: only.as_ref(),
                    skip: &skip,
                    read_back: &out.read_back,
                },
            )?;
            checked = counts;
            failures.extend(found);
        }
        // The snapshot's root cannot even be read: a failed drill, and the report says so.
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
            failures.push(Failure {
                path: "/".into(),
                check: "restore".into(),
                expected: "a readable snapshot tree".into(),
                found: e.to_string(),
            })
        }
        Err(e) => {
            remove_scratch(&scratch);
            return Err(e);
        }
    }
    let verify_seconds = verify_clock.elapsed().as_secs_f64();
    let kept_at = if opts.keep {
        Some(scratch.clone())
    } else {
        remove_scratch(&scratch)
    };

    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let throughput = if restore_seconds > 0.0 {
        selected_bytes as f64 / restore_seconds
    } else {
        0.0
    };
    let estimated = estimate_full_restore(
        restore_seconds,
        selected_bytes,
        total_bytes,
        selected_files,
        files.len() as u64,
    );
    let age_seconds = (started_ns - snap.time_ns) as f64 / 1e9;
    let objectives = Objectives {
        rto_seconds: opts.rto.map(|d| d.as_secs_f64()),
        rto_met: opts.rto.map(|d| estimated <= d.as_secs_f64()),
        rpo_seconds: opts.rpo.map(|d| d.as_secs_f64()),
        rpo_met: opts.rpo.map(|d| age_seconds <= d.as_secs_f64()),
    };
    let verdict = if !failures.is_empty() {
        Verdict::Fail
    } else if objectives.rto_met == Some(false) || objectives.rpo_met == Some(false) {
        Verdict::ObjectiveMissed
    } else {
        Verdict::Pass
    };
    let (host, user) = host_and_user();
    let report = DrillReport {
        schema: report::REPORT_SCHEMA.into(),
        started: crate::clock::rfc3339(started_ns),
        finished: crate::clock::rfc3339(crate::clock::now_ns()),
        host,
        user,
        tool_version: format!("coffer {}", env!("CARGO_PKG_VERSION")),
        repository_id: hex::encode(repo.config().repo_id),
        repository: repo.store().description().to_string(),
        snapshot: SnapshotFacts {
            id: id.to_hex(),
            time: crate::clock::rfc3339(snap.time_ns),
            age_seconds,
            hostname: snap.hostname.clone(),
            paths: snap.paths.clone(),
            tags: snap.tags.clone(),
            files: files.len() as u64,
            bytes: total_bytes,
        },
        sample: sample_facts(opts.sample, seed, selected_files, selected_bytes),
        checked,
        durations: Durations {
            restore_seconds,
            verify_seconds,
            total_seconds: clock.elapsed().as_secs_f64(),
        },
        throughput_bytes_per_second: throughput,
        estimated_full_restore_seconds: estimated,
        objectives,
        failures,
        verdict,
    };
    Ok(DrillOutcome {
        report: report::save(repo, &report)?,
        kept_at,
    })
}

fn list_files(repo: &Repository, snap: &Snapshot) -> Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    let walked = repo.walk(&snap.tree, &mut |path, node| {
        if node.kind == NodeKind::File {
            files.push(FileEntry {
                path: path.to_vec(),
                size: node.size,
            });
        }
        Ok(())
    });
    match walked {
        // A damaged tree is found again by the restore and reported as a failure there.
        Err(e) if e.kind() == ErrorKind::Corrupt => Ok(files),
        other => other.map(|_| files),
    }
}

/// The selected paths (`None` = all), their count and bytes.
fn select(files: &[FileEntry], sample: Sample, seed: u64) -> (Option<HashSet<Vec<u8>>>, u64, u64) {
    let n = match sample {
        Sample::All => return (None, files.len() as u64, files.iter().map(|f| f.size).sum()),
        Sample::Percent(p) => ((p / 100.0) * files.len() as f64).ceil() as usize,
        Sample::Files(n) => n as usize,
    };
    let mut ranked: Vec<(u64, &FileEntry)> = files
        .iter()
        .map(|f| {
            let mut h = blake3::Hasher::new();
            h.update(&seed.to_le_bytes());
            h.update(&f.path);
            let score =
                u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or_default());
            (score, f)
        })
        .collect();
    ranked.sort_by(|a, b| (a.0, &a.1.path).cmp(&(b.0, &b.1.path)));
    ranked.truncate(n.min(files.len()));
    let bytes = ranked.iter().map(|(_, f)| f.size).sum();
    let count = ranked.len() as u64;
    (
        Some(ranked.into_iter().map(|(_, f)| f.path.clone()).collect()),
        count,
        bytes,
    )
}

fn sample_facts(sample: Sample, seed: u64, files: u64, bytes: u64) -> SampleFacts {
    let (mode, requested) = match sample {
        Sample::All => ("all", 0.0),
        Sample::Percent(p) => ("percent", p),
        Sample::Files(n) => ("files", n as f64),
    };
    SampleFacts {
        mode: mode.into(),
        requested,
        seed: format!("{seed:016x}"),
        files_selected: files,
        bytes_selected: bytes,
    }
}

/// Scales the measured restore to the whole snapshot, by bytes (or by files if no bytes).
fn estimate_full_restore(
    seconds: f64,
    bytes: u64,
    total_bytes: u64,
    files: u64,
    total_files: u64,
) -> f64 {
    if bytes > 0 {
        seconds * total_bytes as f64 / bytes as f64
    } else if files > 0 {
        seconds * total_files as f64 / files as f64
    } else {
        seconds
    }
}

fn scratch_dir(target: Option<&Path>) -> Result<PathBuf> {
    let dir = match target {
        Some(t) => t.to_path_buf(),
        None => {
            let suffix: [u8; 6] = crate::clock::random_bytes()?;
            std::env::temp_dir().join(format!("coffer-drill-{}", hex::encode(suffix)))
        }
    };
    let busy = std::fs::read_dir(&dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if busy {
        return Err(Error::invalid(format!(
            "drill target {} is not empty; give an empty or new directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// Removes the scratch copy; returns where it is if it could not be removed.
fn remove_scratch(dir: &Path) -> Option<PathBuf> {
    grant_write(dir);
    match std::fs::remove_dir_all(dir) {
        Ok(()) => None,
        Err(_) => Some(dir.to_path_buf()),
    }
}

/// Restored directories may lack write permission (as in the original); give it back so
/// the copy can be removed.
fn grant_write(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = std::fs::set_permissions(
        dir,
        std::fs::Permissions::from_mode(meta.permissions().mode() | 0o700),
    );
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        grant_write(&entry.path());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize) -> Vec<FileEntry> {
        (0..n)
            .map(|i| FileEntry {
                path: format!("/f{i}").into_bytes(),
                size: 10,
            })
            .collect()
    }

    #[test]
    fn samples_are_reproducible_and_sized() {
        let f = files(100);
        let (a, n, bytes) = select(&f, Sample::Percent(10.0), 7);
        assert_eq!((n, bytes), (10, 100));
        assert_eq!(select(&f, Sample::Percent(10.0), 7).0, a);
        assert_ne!(select(&f, Sample::Percent(10.0), 8).0, a);
        assert_eq!(select(&f, Sample::Files(3), 1).1, 3);
        assert_eq!(select(&f, Sample::Files(1000), 1).1, 100);
        assert_eq!(select(&f, Sample::Percent(0.5), 1).1, 1);
        assert!(select(&f, Sample::All, 1).0.is_none());
    }

    #[test]
    fn estimates_scale_by_bytes_then_files() {
        assert_eq!(estimate_full_restore(2.0, 10, 100, 1, 1), 20.0);
        assert_eq!(estimate_full_restore(2.0, 0, 0, 1, 4), 8.0);
    }
}
