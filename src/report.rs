//! Restore-drill reports: the evidence that a backup was tested, stored in the repository.
//!
//! A report is JSON (schema `coffer-drill-report/1`, documented in
//! `docs/drill-report.schema.json`), sealed like every other object and stored as
//! `reports/<id>`, where the id is the BLAKE3 of the sealed bytes. The exported form adds the
//! report id, a `digest` (plain BLAKE3 of the stored JSON, so an auditor can confirm that an
//! exported copy is the one stored) and a `mac` (keyed with the repository's report key, so
//! only a key holder could have produced it).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::repo::{Repository, check_name};
use crate::verify::{Failure, Verified};

/// The schema identifier written into every report.
pub const REPORT_SCHEMA: &str = "coffer-drill-report/1";
const REPORT_AD: &[u8] = b"coffer drill report v1";

/// The drill's overall result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Everything restored and verified; objectives met.
    Pass,
    /// Something failed verification or could not be restored.
    Fail,
    /// Everything verified, but a recovery objective was missed.
    ObjectiveMissed,
}

/// The snapshot a drill tested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotFacts {
    /// Snapshot id (hex).
    pub id: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Its age when the drill started, in seconds.
    pub age_seconds: f64,
    /// Host it was taken on.
    pub hostname: String,
    /// Paths it holds.
    pub paths: Vec<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Regular files in it.
    pub files: u64,
    /// Bytes of regular files in it.
    pub bytes: u64,
}

/// What was restored: everything or a reproducible sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleFacts {
    /// `all`, `percent` or `files`.
    pub mode: String,
    /// The percentage or file count asked for (0 for `all`).
    pub requested: f64,
    /// Seed of the sample (hex), to reproduce it.
    pub seed: String,
    /// Regular files selected.
    pub files_selected: u64,
    /// Bytes in the selected files.
    pub bytes_selected: u64,
}

/// How long each phase took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Durations {
    /// Restoring (including verification while writing).
    pub restore_seconds: f64,
    /// Reading back and comparing.
    pub verify_seconds: f64,
    /// The whole drill.
    pub total_seconds: f64,
}

/// Recovery objectives and whether they were met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Objectives {
    /// Recovery time objective in seconds.
    pub rto_seconds: Option<f64>,
    /// Whether the estimated full restore fits the RTO.
    pub rto_met: Option<bool>,
    /// Recovery point objective in seconds.
    pub rpo_seconds: Option<f64>,
    /// Whether the snapshot is younger than the RPO.
    pub rpo_met: Option<bool>,
}

/// One restore drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrillReport {
    /// Always [`REPORT_SCHEMA`].
    pub schema: String,
    /// Start (RFC 3339).
    pub started: String,
    /// End (RFC 3339).
    pub finished: String,
    /// Host that ran the drill.
    pub host: String,
    /// User that ran it.
    pub user: String,
    /// Coffer version.
    pub tool_version: String,
    /// Repository id (hex).
    pub repository_id: String,
    /// Repository location as given.
    pub repository: String,
    /// The snapshot tested.
    pub snapshot: SnapshotFacts,
    /// What was restored.
    pub sample: SampleFacts,
    /// What was verified.
    pub checked: Verified,
    /// Phase durations.
    pub durations: Durations,
    /// Restore throughput in bytes per second.
    pub throughput_bytes_per_second: f64,
    /// Estimated time to restore the whole snapshot, in seconds.
    pub estimated_full_restore_seconds: f64,
    /// Objectives.
    pub objectives: Objectives,
    /// Every failure.
    pub failures: Vec<Failure>,
    /// The result.
    pub verdict: Verdict,
}

/// A report as stored, with what proves it is the stored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReport {
    /// Object id (`reports/<id>`).
    pub report_id: String,
    /// Plain BLAKE3 of the stored JSON.
    pub digest: String,
    /// BLAKE3 keyed with the repository's report key, over the stored JSON.
    pub mac: String,
    /// The report.
    #[serde(flatten)]
    pub report: DrillReport,
}

/// Seals and stores a report.
pub fn save(repo: &Repository, report: &DrillReport) -> Result<StoredReport> {
    let json =
        serde_json::to_vec(report).map_err(|e| Error::invalid(format!("encoding report: {e}")))?;
    let sealed = repo.keys().seal(REPORT_AD, &json)?;
    let id = ObjectId::of(&sealed);
    repo.store()
        .put_object(&format!("reports/{id}"), Bytes::from(sealed))?;
    Ok(stored(repo, id, &json, report.clone()))
}

fn stored(repo: &Repository, id: ObjectId, json: &[u8], report: DrillReport) -> StoredReport {
    StoredReport {
        report_id: id.to_hex(),
        digest: blake3::hash(json).to_hex().to_string(),
        mac: hex::encode(repo.keys().report_mac(json)),
        report,
    }
}

fn load(repo: &Repository, name: &str) -> Result<StoredReport> {
    let sealed = repo.store().get(name)?;
    let id = check_name(name, &sealed)?;
    let json = repo
        .keys()
        .open(REPORT_AD, &sealed)
        .map_err(|e| e.context(name))?;
    let report: DrillReport =
        serde_json::from_slice(&json).map_err(|e| Error::corrupt(format!("{name}: {e}")))?;
    if report.schema != REPORT_SCHEMA {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!("{name}: report schema {}", report.schema),
        ));
    }
    Ok(stored(repo, id, &json, report))
}

/// Every stored drill report, oldest first.
pub fn history(repo: &Repository) -> Result<Vec<StoredReport>> {
    let mut out = Vec::new();
    for (name, _) in repo.store().list("reports")? {
        out.push(load(repo, &name)?);
    }
    out.sort_by(|a, b| (&a.report.started, &a.report_id).cmp(&(&b.report.started, &b.report_id)));
    Ok(out)
}

/// Finds a report by `latest`, full id or unique prefix.
pub fn find(repo: &Repository, spec: &str) -> Result<StoredReport> {
    let all = history(repo)?;
    if spec == "latest" {
        return all
            .into_iter()
            .last()
            .ok_or_else(|| Error::not_found("no drill has been run on this repository yet"));
    }
    let mut matches: Vec<StoredReport> = all
        .into_iter()
        .filter(|r| r.report_id.starts_with(spec))
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(Error::not_found(format!(
            "no drill report with id {spec}; `coffer drill history` lists them"
        ))),
        _ => Err(Error::invalid(format!(
            "report id prefix {spec} is ambiguous"
        ))),
    }
}
