//! Check: verify the repository's structure and, on request, every byte of its data.
//!
//! The structure check reads every index object, compares the index with the packs that exist
//! (missing or resized packs are errors; packs no index names are leftovers of interrupted
//! backups and only reported), opens every snapshot and walks every tree, making sure each
//! referenced blob is indexed. `read_data` also downloads every pack, checks it against its
//! name, authenticates its header and every blob, and compares the header with the index.
//! Every problem names the snapshots and files it affects. Check never modifies the repository.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use crate::blob::{BlobType, open_blob};
use crate::error::Result;
use crate::id::{BlobId, ObjectId};
use crate::index::{Index, IndexedPack, open_index};
use crate::pack::read_header;
use crate::repo::{Repository, check_name, pack_name};
use crate::tree::NodeKind;

/// What to check.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// Download and verify every pack.
    pub read_data: bool,
    /// Download and verify only this subset of the packs.
    pub subset: Option<Subset>,
}

/// Which packs `check` downloads when not all of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// A random share of the packs, in (0, 1].
    Fraction(f64),
    /// Part `n` of `t` (1-based): packs whose id, read as a number, is `n - 1` modulo `t`.
    /// Running parts 1 to `t` covers every pack exactly once.
    Part {
        /// Which part, 1..=t.
        n: u32,
        /// How many parts.
        t: u32,
    },
}

impl Subset {
    /// Parses `5%` or `n/t`.
    pub fn parse(s: &str) -> crate::Result<Self> {
        let bad = || crate::Error::invalid(format!("{s:?} is not a subset like 5% or 2/7"));
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            return if p > 0.0 && p <= 100.0 {
                Ok(Subset::Fraction(p / 100.0))
            } else {
                Err(bad())
            };
        }
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let (n, t): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            t.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n > t {
            return Err(bad());
        }
        Ok(Subset::Part { n, t })
    }

    /// The packs of `packs` in this subset.
    fn select<'a>(&self, packs: Vec<&'a IndexedPack>) -> crate::Result<Vec<&'a IndexedPack>> {
        let number = |id: &ObjectId| u64::from_le_bytes(id.0[..8].try_into().unwrap_or_default());
        match *self {
            Subset::Part { n, t } => Ok(packs
                .into_iter()
                .filter(|p| number(&p.id) % u64::from(t) == u64::from(n - 1))
                .collect()),
            Subset::Fraction(f) => {
                let salt: [u8; 32] = crate::clock::random_bytes()?;
                let want = (f * packs.len() as f64).ceil() as usize;
                let mut ranked: Vec<(blake3::Hash, &IndexedPack)> = packs
                    .into_iter()
                    .map(|p| (blake3::keyed_hash(&salt, &p.id.0), p))
                    .collect();
                ranked.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                Ok(ranked.into_iter().take(want).map(|(_, p)| p).collect())
            }
        }
    }
}

/// One problem found, with what it affects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// What is wrong.
    pub message: String,
    /// The snapshot affected, if the problem is inside one.
    pub snapshot: Option<String>,
    /// The path affected inside the snapshot.
    pub path: Option<String>,
}

/// The outcome of a check.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Index objects read.
    pub index_files: usize,
    /// Packs named by the index.
    pub packs: usize,
    /// Blobs in the index.
    pub blobs: usize,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Distinct trees walked.
    pub trees: usize,
    /// Packs downloaded and verified (`read_data`).
    pub packs_read: usize,
    /// Packs in the store that no index names (harmless leftovers of interrupted backups).
    pub unreferenced_packs: Vec<String>,
    /// Everything that is wrong.
    pub errors: Vec<Problem>,
}

impl CheckReport {
    fn error(&mut self, message: String) {
        self.errors.push(Problem {
            message,
            snapshot: None,
            path: None,
        });
    }

    /// Whether no error was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks `repo`; replaces its in-memory index with the one read during the check.
pub fn check(repo: &mut Repository, opts: CheckOptions) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let indexed = load_index(repo, &mut report)?;
    let mut index = Index::default();
    for p in &indexed {
        index.push_pack(p);
    }
    index.sort();
    report.packs = index.packs().len();
    report.blobs = index.len();
    *repo.index_mut() = index;
    let damaged_packs = check_packs_exist(repo, &mut report)?;
    let mut bad: HashSet<BlobId> = indexed
        .iter()
        .filter(|p| damaged_packs.contains(&p.id))
        .flat_map(|p| p.entries.iter().map(|e| e.id))
        .collect();
    if opts.read_data || opts.subset.is_some() {
        let mut seen = HashSet::new();
        let mut intact: Vec<&IndexedPack> = indexed
            .iter()
            .filter(|p| !damaged_packs.contains(&p.id) && seen.insert(p.id))
            .collect();
        if let Some(subset) = opts.subset {
            intact = subset.select(intact)?;
        }
        bad.extend(read_packs(repo, &intact, &mut report)?);
    }
    check_snapshots(repo, &bad, &mut report)?;
    Ok(report)
}

fn load_index(repo: &Repository, report: &mut CheckReport) -> Result<Vec<IndexedPack>> {
    let mut packs = Vec::new();
    for (name, _) in repo.store().list("index")? {
        report.index_files += 1;
        let read = repo
            .store()
            .get(&name)
            .and_then(|bytes| check_name(&name, &bytes).map(|_| bytes))
            .and_then(|bytes| open_index(repo.keys(), &bytes));
        match read {
            Ok(p) => packs.extend(p),
            Err(e) => report.error(format!("index object {name} is unusable: {e}")),
        }
    }
    Ok(packs)
}

/// Compares the index with the stored packs; returns the packs that are missing or resized.
fn check_packs_exist(repo: &Repository, report: &mut CheckReport) -> Result<HashSet<ObjectId>> {
    let stored: HashMap<String, u64> = repo.store().list("data")?.into_iter().collect();
    let mut damaged = HashSet::new();
    for (id, size) in repo.index().packs() {
        let problem = match stored.get(&pack_name(id)) {
            None => format!("pack {id} is missing from the store"),
            Some(&actual) if actual != size => {
                format!(
                    "pack {id} has {actual} bytes but the index says {size} (truncated or replaced)"
                )
            }
            Some(_) => continue,
        };
        report.error(problem);
        damaged.insert(*id);
    }
    let known: HashSet<String> = repo.index().packs().map(|(id, _)| pack_name(id)).collect();
    let mut leftovers: Vec<String> = stored
        .keys()
        .filter(|n| !known.contains(*n))
        .cloned()
        .collect();
    leftovers.sort();
    report.unreferenced_packs = leftovers;
    Ok(damaged)
}

/// Downloads and verifies every indexed pack; returns the blobs that failed.
fn read_packs(
    repo: &Repository,
    indexed: &[&IndexedPack],
    report: &mut CheckReport,
) -> Result<HashSet<BlobId>> {
    let mut bad = HashSet::new();
    for pack in indexed {
        report.packs_read += 1;
        let mut fail = |report: &mut CheckReport, msg: String| {
            report.error(format!("pack {}: {msg}", pack.id));
            bad.extend(pack.entries.iter().map(|e| e.id));
        };
        let name = pack_name(&pack.id);
        let bytes = match repo.store().get(&name) {
            Ok(b) => b,
            Err(e) => {
                fail(report, format!("cannot be read: {e}"));
                continue;
            }
        };
        if ObjectId::of(&bytes) != pack.id {
            fail(
                report,
                "content does not match its name (altered, truncated or swapped)".into(),
            );
            continue;
        }
        let header = match read_header(repo.keys(), &bytes) {
            Ok(h) => h,
            Err(e) => {
                fail(report, format!("header: {e}"));
                continue;
            }
        };
        if header != pack.entries {
            fail(report, "header does not agree with the index".into());
            continue;
        }
        for e in &header {
            let sealed = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            let opened = open_blob(repo.keys(), e.kind, &e.id, sealed).and_then(|plain| {
                if plain.len() == e.raw_length as usize {
                    Ok(())
                } else {
                    Err(crate::Error::corrupt(
                        "plaintext length differs from the header",
                    ))
                }
            });
            if let Err(err) = opened {
                report.error(format!("pack {}: blob {}: {err}", pack.id, e.id.short()));
                bad.insert(e.id);
            }
        }
    }
    Ok(bad)
}

/// A problem inside a tree, relative to it.
#[derive(Clone)]
struct Damage {
    path: Vec<u8>,
    message: String,
}

struct TreeWalk<'a> {
    repo: &'a Repository,
    bad: &'a HashSet<BlobId>,
    memo: HashMap<BlobId, Rc<Vec<Damage>>>,
}

impl TreeWalk<'_> {
    /// Every problem in the tree `id` and below, memoized per tree.
    fn damage(&mut self, id: &BlobId) -> Rc<Vec<Damage>> {
        if let Some(d) = self.memo.get(id) {
            return d.clone();
        }
        let mut out = Vec::new();
        let tree = if self.bad.contains(id) {
            Err(format!("tree {} is corrupt", id.short()))
        } else {
            self.repo
                .load_tree(id)
                .map_err(|e| format!("tree {} cannot be read: {e}", id.short()))
        };
        match tree {
            Err(message) => out.push(Damage {
                path: Vec::new(),
                message,
            }),
            Ok(tree) => {
                for node in &tree.nodes {
                    let mut prefixed = |d: &Damage| {
                        let mut path = node.name.clone();
                        if !d.path.is_empty() {
                            path.push(b'/');
                            path.extend_from_slice(&d.path);
                        }
                        Damage {
                            path,
                            message: d.message.clone(),
                        }
                    };
                    match (node.kind, node.subtree) {
                        (NodeKind::Dir, Some(sub)) => {
                            let below = self.damage(&sub);
                            out.extend(below.iter().map(&mut prefixed));
                        }
                        (NodeKind::File, _) => {
                            if let Some(message) = self.file_damage(&node.content) {
                                out.push(prefixed(&Damage {
                                    path: Vec::new(),
                                    message,
                                }));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        let out = Rc::new(out);
        self.memo.insert(*id, out.clone());
        out
    }

    fn file_damage(&self, content: &[BlobId]) -> Option<String> {
        let missing = content
            .iter()
            .filter(|id| !self.repo.index().contains(id))
            .count();
        let corrupt = content.iter().filter(|id| self.bad.contains(id)).count();
        let wrong_type = content
            .iter()
            .filter(|id| {
                self.repo
                    .index()
                    .get(id)
                    .is_some_and(|l| l.kind != BlobType::Data)
            })
            .count();
        match (missing, corrupt, wrong_type) {
            (0, 0, 0) => None,
            _ => Some(format!(
                "file content damaged: {missing} chunk(s) missing, {corrupt} corrupt, {wrong_type} of the wrong type"
            )),
        }
    }
}

fn check_snapshots(
    repo: &Repository,
    bad: &HashSet<BlobId>,
    report: &mut CheckReport,
) -> Result<()> {
    let mut walk = TreeWalk {
        repo,
        bad,
        memo: HashMap::new(),
    };
    for (name, _) in repo.store().list("snapshots")? {
        report.snapshots += 1;
        let snap = repo
            .store()
            .get(&name)
            .and_then(|b| check_name(&name, &b).map(|id| (id, b)))
            .and_then(|(id, b)| crate::snapshot::Snapshot::open(repo.keys(), &b).map(|s| (id, s)));
        let (id, snap) = match snap {
            Ok(x) => x,
            Err(e) => {
                report.error(format!("snapshot object {name} is unusable: {e}"));
                continue;
            }
        };
        for d in walk.damage(&snap.tree).iter() {
            report.errors.push(Problem {
                message: d.message.clone(),
                snapshot: Some(id.to_hex()),
                path: Some(format!("/{}", String::from_utf8_lossy(&d.path))),
            });
        }
    }
    report.trees = walk.memo.len();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packs(n: u8) -> Vec<IndexedPack> {
        (0..n)
            .map(|i| IndexedPack {
                id: ObjectId::of(&[i]),
                size: 1,
                entries: vec![],
            })
            .collect()
    }

    #[test]
    fn parts_cover_every_pack_once() {
        let all = packs(50);
        let mut seen = Vec::new();
        for n in 1..=7 {
            let part = Subset::parse(&format!("{n}/7"))
                .unwrap()
                .select(all.iter().collect())
                .unwrap();
            seen.extend(part.into_iter().map(|p| p.id));
        }
        seen.sort();
        let mut ids: Vec<ObjectId> = all.iter().map(|p| p.id).collect();
        ids.sort();
        assert_eq!(seen, ids);
    }

    #[test]
    fn fraction_and_parse() {
        let all = packs(40);
        assert_eq!(
            Subset::parse("5%")
                .unwrap()
                .select(all.iter().collect())
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            Subset::parse("100%")
                .unwrap()
                .select(all.iter().collect())
                .unwrap()
                .len(),
            40
        );
        for bad in ["0%", "101%", "0/3", "4/3", "x", "1/"] {
            assert!(Subset::parse(bad).is_err(), "{bad}");
        }
    }
}
