//! `coffer ls`: list the entries of a snapshot, optionally below a path.

use std::io::Write;

use anyhow::{Result, bail};
use coffer::repo::Repository;
use coffer::tree::{Node, NodeKind};

use super::common::{Global, human_time, rfc3339};

#[derive(clap::Args)]
pub struct Args {
    /// Snapshot id, id prefix, or `latest`
    snapshot: String,
    /// Only list this path and what is below it
    path: Option<String>,
    /// Long listing: mode, owner, size and time
    #[arg(short, long)]
    long: bool,
}

pub fn run(global: &Global, args: Args) -> Result<i32> {
    let repo = global.open()?;
    let (_, snap) = repo.find_snapshot(&args.snapshot)?;
    let prefix = args
        .path
        .as_deref()
        .map(|p| p.trim_end_matches('/').to_string())
        .unwrap_or_default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut json = Vec::new();
    let mut found = prefix.is_empty();
    let mut visit = |path: &str, node: &Node| -> Result<()> {
        let inside = prefix.is_empty() || path == prefix || path.starts_with(&format!("{prefix}/"));
        if !inside {
            return Ok(());
        }
        found = true;
        if global.json {
            json.push(serde_json::json!({
                "path": path, "type": node.kind, "mode": format!("{:04o}", node.mode), "uid": node.uid,
                "gid": node.gid, "user": node.user, "group": node.group, "size": node.size,
                "mtime": rfc3339(node.mtime.sec * 1_000_000_000 + i64::from(node.mtime.nsec)),
                "blake3": node.blake3.map(|h| h.to_hex()),
                "target": node.target.as_deref().map(String::from_utf8_lossy),
            }));
        } else if args.long {
            writeln!(
                out,
                "{}{}  {:>8} {:>8}  {:>12}  {}  {}{}",
                type_char(node.kind),
                mode_string(node.mode),
                node.user.clone().unwrap_or_else(|| node.uid.to_string()),
                node.group.clone().unwrap_or_else(|| node.gid.to_string()),
                node.size,
                human_time(node.mtime.sec * 1_000_000_000 + i64::from(node.mtime.nsec)),
                path,
                node.target
                    .as_deref()
                    .map(|t| format!(" -> {}", String::from_utf8_lossy(t)))
                    .unwrap_or_default()
            )?;
        } else if !global.quiet {
            writeln!(out, "{path}")?;
        }
        Ok(())
    };
    walk(&repo, &snap.tree, "", &prefix, &mut visit)?;
    if !found {
        bail!("{prefix} is not in snapshot");
    }
    if global.json {
        drop(out);
        global.print_json(&json)?;
    } else {
        out.flush()?;
    }
    Ok(super::EXIT_OK)
}

/// Depth-first walk, only descending where `prefix` may lie.
fn walk(
    repo: &Repository,
    tree: &coffer::id::BlobId,
    dir: &str,
    prefix: &str,
    visit: &mut dyn FnMut(&str, &Node) -> Result<()>,
) -> Result<()> {
    for node in repo.load_tree(tree)?.nodes {
        let path = format!("{dir}/{}", String::from_utf8_lossy(&node.name));
        visit(&path, &node)?;
        let relevant = prefix.is_empty()
            || prefix.starts_with(&format!("{path}/"))
            || path.starts_with(prefix);
        if let (NodeKind::Dir, Some(sub), true) = (node.kind, node.subtree, relevant) {
            walk(repo, &sub, &path, prefix, visit)?;
        }
    }
    Ok(())
}

fn type_char(kind: NodeKind) -> char {
    match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    }
}

fn mode_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    let mut b: Vec<char> = s.chars().collect();
    for (bit, at, lower, upper) in [
        (0o4000, 2, 's', 'S'),
        (0o2000, 5, 's', 'S'),
        (0o1000, 8, 't', 'T'),
    ] {
        if mode & bit != 0 {
            b[at] = if b[at] == 'x' { lower } else { upper };
        }
    }
    b.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn mode_strings() {
        assert_eq!(super::mode_string(0o4755), "rwsr-xr-x");
        assert_eq!(super::mode_string(0o1644), "rw-r--r-T");
    }
}
