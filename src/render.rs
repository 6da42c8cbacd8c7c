//! Renders drill reports as JSON, Markdown or a self-contained HTML page with charts.
//!
//! Rendering only builds strings; writing them out is the caller's business. The HTML page has
//! no external resources (inline CSS and SVG), so it can be archived and handed to an auditor
//! as one file.

use std::fmt::Write;

use crate::error::{Error, Result};
use crate::report::{StoredReport, Verdict};

/// The pretty-printed JSON export (the documented schema).
pub fn json(r: &StoredReport) -> Result<String> {
    serde_json::to_string_pretty(r).map_err(|e| Error::invalid(format!("encoding report: {e}")))
}

fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::ObjectiveMissed => "OBJECTIVE MISSED",
    }
}

fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "#1a7f37",
        Verdict::Fail => "#cf222e",
        Verdict::ObjectiveMissed => "#bf8700",
    }
}

/// Seconds as `1h 02m 03s`, `2m 05s` or `1.25 s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        return format!("{s:.2} s");
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, total / 60 % 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {sec:02}s")
    } else {
        format!("{m}m {sec:02}s")
    }
}

/// Bytes for people: `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    bytes(n as f64)
}

fn bytes(n: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut i) = (n, 0);
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Rows of (label, value) facts shared by the Markdown and HTML renderings.
fn facts(r: &StoredReport) -> Vec<(&'static str, String)> {
    let d = &r.report;
    let sample = match d.sample.mode.as_str() {
        "all" => "whole snapshot".to_string(),
        "percent" => format!("{}% of files (seed {})", d.sample.requested, d.sample.seed),
        _ => format!("{} files (seed {})", d.sample.requested, d.sample.seed),
    };
    let objective = |secs: Option<f64>, met: Option<bool>, what: &str| match (secs, met) {
        (Some(s), Some(true)) => format!("{} — met", duration(s)),
        (Some(s), _) => format!("{} — MISSED ({what})", duration(s)),
        (None, _) => "not set".to_string(),
    };
    vec![
        ("Started", d.started.clone()),
        ("Finished", d.finished.clone()),
        (
            "Run by",
            format!("{}@{} with {}", d.user, d.host, d.tool_version),
        ),
        (
            "Repository",
            format!("{} (id {})", d.repository, d.repository_id),
        ),
        (
            "Snapshot",
            format!(
                "{} taken {} on {}",
                d.snapshot.id, d.snapshot.time, d.snapshot.hostname
            ),
        ),
        ("Snapshot paths", d.snapshot.paths.join(", ")),
        ("Snapshot age", duration(d.snapshot.age_seconds)),
        (
            "Snapshot size",
            format!(
                "{} files, {}",
                d.snapshot.files,
                bytes(d.snapshot.bytes as f64)
            ),
        ),
        (
            "Sample",
            format!(
                "{sample}: {} files, {}",
                d.sample.files_selected,
                bytes(d.sample.bytes_selected as f64)
            ),
        ),
        (
            "Verified",
            format!(
                "{} files, {} directories, {} other entries, {}",
                d.checked.files,
                d.checked.dirs,
                d.checked.others,
                bytes(d.checked.bytes as f64)
            ),
        ),
        (
            "Durations",
            format!(
                "restore {}, verify {}, total {}",
                duration(d.durations.restore_seconds),
                duration(d.durations.verify_seconds),
                duration(d.durations.total_seconds)
            ),
        ),
        (
            "Throughput",
            format!("{}/s", bytes(d.throughput_bytes_per_second)),
        ),
        (
            "Estimated full restore",
            duration(d.estimated_full_restore_seconds),
        ),
        (
            "Recovery time objective",
            objective(
                d.objectives.rto_seconds,
                d.objectives.rto_met,
                "estimated full restore is longer",
            ),
        ),
        (
            "Recovery point objective",
            objective(
                d.objectives.rpo_seconds,
                d.objectives.rpo_met,
                "the snapshot is older",
            ),
        ),
    ]
}

/// A Markdown rendering.
pub fn markdown(r: &StoredReport) -> String {
    let d = &r.report;
    let mut out = String::new();
    let _ = writeln!(out, "# Restore drill report: {}\n", verdict_text(d.verdict));
    let _ = writeln!(out, "| | |\n|---|---|");
    for (k, v) in facts(r) {
        let _ = writeln!(out, "| {k} | {} |", v.replace('|', "\\|"));
    }
    let _ = writeln!(out, "\n## Failures\n");
    if d.failures.is_empty() {
        let _ = writeln!(out, "None: every restored entry matched the snapshot.");
    } else {
        let _ = writeln!(
            out,
            "| Path | Check | Expected | Found |\n|---|---|---|---|"
        );
        for f in &d.failures {
            let cell = |s: &str| s.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                cell(&f.path),
                f.check,
                cell(&f.expected),
                cell(&f.found)
            );
        }
    }
    let _ = writeln!(out, "\n## Evidence\n");
    let _ = writeln!(
        out,
        "- Report id: `{}`\n- Digest (BLAKE3 of the stored report): `{}`\n- MAC (repository report key): `{}`",
        r.report_id, r.digest, r.mac
    );
    let _ = writeln!(
        out,
        "\nConfirm with `coffer report drill {} --format json`: the digest must match.",
        &r.report_id[..12]
    );
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A self-contained HTML page for `r`, with charts of `history` (oldest first).
pub fn html(r: &StoredReport, history: &[StoredReport]) -> String {
    let d = &r.report;
    let color = verdict_color(d.verdict);
    let mut rows = String::new();
    for (k, v) in facts(r) {
        let _ = write!(rows, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    let failures = if d.failures.is_empty() {
        "<p class=\"ok\">None: every restored entry matched the snapshot.</p>".to_string()
    } else {
        let mut t = String::from(
            "<table class=\"fail\"><tr><th>Path</th><th>Check</th><th>Expected</th><th>Found</th></tr>",
        );
        for f in &d.failures {
            let _ = write!(
                t,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&f.path),
                esc(&f.check),
                esc(&f.expected),
                esc(&f.found)
            );
        }
        t + "</table>"
    };
    let charts = charts(history);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Coffer restore drill {id} — {verdict}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f6f8fa;color:#1f2328}}
main{{max-width:980px;margin:0 auto;padding:32px}}
header{{display:flex;align-items:center;gap:24px;margin-bottom:24px}}
h1{{font-size:26px;margin:0}} h2{{font-size:18px;margin:32px 0 12px}}
.badge{{background:{color};color:#fff;font-weight:700;font-size:22px;padding:10px 20px;border-radius:8px;letter-spacing:.05em}}
.sub{{color:#59636e;margin-top:4px}}
.card{{background:#fff;border:1px solid #d1d9e0;border-radius:8px;padding:20px}}
table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;padding:6px 10px;border-bottom:1px solid #eaeef2;vertical-align:top;font-size:14px}}
th{{color:#59636e;font-weight:600;width:230px}}
table.fail th{{width:auto}} table.fail td{{color:#cf222e}}
.ok{{color:#1a7f37;font-weight:600}}
.charts{{display:grid;grid-template-columns:1fr 1fr;gap:16px}}
.charts .card:last-child{{grid-column:1 / span 2}}
code{{font-family:ui-monospace,monospace;font-size:13px;word-break:break-all}}
footer{{color:#59636e;font-size:13px;margin-top:32px}}
</style></head>
<body><main>
<header><div class="badge">{verdict}</div><div><h1>Restore drill report</h1>
<div class="sub">Snapshot {short} · {started} · ISO/IEC 27002 8.13 (information backup) test record</div></div></header>
<div class="card"><table>{rows}</table></div>
<h2>Failures</h2><div class="card">{failures}</div>
<h2>Drill history</h2>{charts}
<footer><p>Report id <code>{id}</code><br>Digest (BLAKE3 of the stored report) <code>{digest}</code><br>
MAC (repository report key) <code>{mac}</code></p>
<p>This report is stored encrypted and authenticated in the repository. To confirm that this copy is
the stored one, run <code>coffer report drill {short_id} --format json</code> and compare the digest.</p></footer>
</main></body></html>
"#,
        id = esc(&r.report_id),
        short_id = esc(&r.report_id[..12]),
        verdict = verdict_text(d.verdict),
        short = esc(&d.snapshot.id[..8]),
        started = esc(&d.started),
        digest = esc(&r.digest),
        mac = esc(&r.mac),
    )
}

fn charts(history: &[StoredReport]) -> String {
    if history.is_empty() {
        return "<div class=\"card\"><p>No earlier drills.</p></div>".into();
    }
    // "MM-DD HH:MM" from the RFC 3339 start time.
    let label = |r: &StoredReport| {
        let s = &r.report.started;
        format!(
            "{} {}",
            s.get(5..10).unwrap_or(""),
            s.get(11..16).unwrap_or("")
        )
    };
    let durations: Vec<(String, f64, &str)> = history
        .iter()
        .map(|r| {
            (
                label(r),
                r.report.durations.total_seconds,
                verdict_color(r.report.verdict),
            )
        })
        .collect();
    let throughput: Vec<(String, f64, &str)> = history
        .iter()
        .map(|r| {
            (
                label(r),
                r.report.throughput_bytes_per_second / (1024.0 * 1024.0),
                "#0969da",
            )
        })
        .collect();
    format!(
        "<div class=\"charts\"><div class=\"card\">{}</div><div class=\"card\">{}</div><div class=\"card\">{}</div></div>",
        bar_chart("Drill duration (seconds)", &durations),
        bar_chart("Restore throughput (MiB/s)", &throughput),
        outcome_strip(history, &label),
    )
}

/// Two significant digits, for axis labels.
fn axis(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// An SVG bar chart of `(label, value, color)`.
fn bar_chart(title: &str, bars: &[(String, f64, &str)]) -> String {
    let (w, h, left, bottom, top) = (440.0, 200.0, 44.0, 34.0, 28.0);
    let max = bars.iter().map(|b| b.1).fold(0.0f64, f64::max).max(1e-9);
    let slot = (w - left - 8.0) / bars.len().max(1) as f64;
    let bar_w = (slot * 0.7).min(40.0);
    let base = h - bottom;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{t}\"><text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"600\">{t}</text>",
        t = esc(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\" stroke=\"#8c959f\"/>",
        w - 4.0
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{}\" y2=\"{top}\" stroke=\"#eaeef2\" stroke-dasharray=\"3 3\"/>",
        w - 4.0
    );
    for (y, v) in [(top + 4.0, axis(max)), (base, "0".to_string())] {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{y}\" font-size=\"10\" text-anchor=\"end\" fill=\"#59636e\">{v}</text>",
            left - 4.0
        );
    }
    let every = (bars.len() / 6).max(1);
    for (i, (label, value, color)) in bars.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - bar_w) / 2.0;
        let bh = (value / max) * (base - top);
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" rx=\"3\" fill=\"{color}\"><title>{} — {value:.3}</title></rect>",
            base - bh,
            esc(label)
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\" fill=\"#59636e\">{}</text>",
                x + bar_w / 2.0,
                base + 14.0,
                esc(label)
            );
        }
    }
    svg + "</svg>"
}

/// A strip of coloured squares, one per drill, with a legend.
fn outcome_strip(history: &[StoredReport], label: &dyn Fn(&StoredReport) -> String) -> String {
    let (w, h, cell) = (900.0, 92.0, 26.0);
    let step = ((w - 20.0) / history.len().max(1) as f64).min(40.0);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"Outcome of each drill\"><text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"600\">Outcome of each drill</text>"
    );
    for (i, (text, v)) in [
        ("pass", Verdict::Pass),
        ("objective missed", Verdict::ObjectiveMissed),
        ("fail", Verdict::Fail),
    ]
    .iter()
    .enumerate()
    {
        let x = 520.0 + i as f64 * 130.0;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"6\" width=\"12\" height=\"12\" rx=\"2\" fill=\"{}\"/><text x=\"{}\" y=\"16\" font-size=\"11\" fill=\"#59636e\">{text}</text>",
            verdict_color(*v),
            x + 16.0
        );
    }
    // One label per 70 units, so they never overlap.
    let every = (70.0 / step).ceil().max(1.0) as usize;
    for (i, r) in history.iter().enumerate() {
        let x = 10.0 + i as f64 * step;
        let _ = write!(
            svg,
            "<rect x=\"{x:.1}\" y=\"30\" width=\"{:.1}\" height=\"{cell}\" rx=\"3\" fill=\"{}\"><title>{} — {}</title></rect>",
            (step - 4.0).min(cell),
            verdict_color(r.report.verdict),
            esc(&r.report.started),
            verdict_text(r.report.verdict)
        );
        if i % every == 0 {
            let _ = write!(
                svg,
                "<text x=\"{:.1}\" y=\"76\" font-size=\"9\" fill=\"#59636e\">{}</text>",
                x,
                esc(&label(r))
            );
        }
    }
    svg + "</svg>"
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_well() {
        assert_eq!(super::duration(1.234), "1.23 s");
        assert_eq!(super::duration(125.0), "2m 05s");
        assert_eq!(super::duration(3723.0), "1h 02m 03s");
        assert_eq!(super::esc("<a&\">"), "&lt;a&amp;&quot;&gt;");
    }
}
