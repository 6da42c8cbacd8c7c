//! Time and randomness, from one place that tests can control.
//!
//! Everything in the library that needs "now" or random bytes asks this module. Tests may pin
//! the clock with [`set_fixed_now`] (per thread) to get reproducible snapshots; randomness
//! always comes from the operating system, as nonces and keys must never be predictable.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};

thread_local! {
    static FIXED_NOW: Cell<Option<i64>> = const { Cell::new(None) };
}

/// Nanoseconds since the Unix epoch, now (or the pinned time in tests).
pub fn now_ns() -> i64 {
    if let Some(t) = FIXED_NOW.with(Cell::get) {
        return t;
    }
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Pins [`now_ns`] on the current thread (tests only; `None` unpins).
pub fn set_fixed_now(ns: Option<i64>) {
    FIXED_NOW.with(|c| c.set(ns));
}

/// A time in ns since the epoch as RFC 3339 in UTC (`1969-12-31T23:59:59.000000000Z`).
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
    .unwrap_or_else(|| ns.to_string())
}

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("the operating system gave no random bytes: {e}"),
        )
    })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_now_is_per_thread() {
        set_fixed_now(Some(42));
        assert_eq!(now_ns(), 42);
        std::thread::spawn(|| assert_ne!(now_ns(), 42))
            .join()
            .unwrap();
        set_fixed_now(None);
        assert!(now_ns() > 1_700_000_000_000_000_000);
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>().unwrap(), random_bytes::<32>().unwrap());
    }
}
