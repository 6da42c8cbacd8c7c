//! Include and exclude patterns, with the conventions restic users know.
//!
//! A pattern without a slash matches a file name anywhere (`*.tmp`, `node_modules`); a pattern
//! with a slash matches the whole path (`/home/*/cache`, `**/target`). Matching works on raw
//! bytes, so names that are not UTF-8 can be excluded too.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};

/// A compiled set of patterns.
#[derive(Clone)]
pub struct PathFilter {
    names: GlobSet,
    paths: GlobSet,
    empty: bool,
}

impl PathFilter {
    /// Compiles `patterns` (blank lines and `#` comments are ignored).
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        let mut empty = true;
        for raw in patterns {
            let p = raw.trim();
            if p.is_empty() || p.starts_with('#') {
                continue;
            }
            empty = false;
            let glob = GlobBuilder::new(p.trim_end_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::invalid(format!("bad pattern {p:?}: {e}")))?;
            if p.trim_end_matches('/').contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::invalid(format!("patterns: {e}")))
        };
        Ok(PathFilter {
            names: build(names)?,
            paths: build(paths)?,
            empty,
        })
    }

    /// Whether no pattern was given.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `path` (absolute, raw bytes) or its last component `name` matches.
    pub fn matches(&self, path: &[u8], name: &[u8]) -> bool {
        if self.empty {
            return false;
        }
        self.names.is_match_candidate(&candidate(name))
            || self.paths.is_match_candidate(&candidate(path))
    }
}

fn candidate(bytes: &[u8]) -> globset::Candidate<'_> {
    use std::os::unix::ffi::OsStrExt;
    globset::Candidate::new(std::ffi::OsStr::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_and_path_patterns() {
        let f = PathFilter::new(&[
            "*.tmp".into(),
            "/home/*/cache".into(),
            "# c".into(),
            "".into(),
        ])
        .unwrap();
        assert!(f.matches(b"/a/b/x.tmp", b"x.tmp"));
        assert!(f.matches(b"/home/u/cache", b"cache"));
        assert!(!f.matches(b"/home/u/v/cache", b"cache"));
        assert!(!f.matches(b"/a/b.txt", b"b.txt"));
        assert!(PathFilter::new(&[]).unwrap().is_empty());
        assert!(PathFilter::new(&["[".into()]).is_err());
    }
}
