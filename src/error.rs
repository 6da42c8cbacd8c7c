//! The library's one error type.
//!
//! Every module's failure ends up as an [`Error`] with a matchable [`ErrorKind`], so the binary
//! can map kinds to exit codes and callers can decide whether to retry. Messages name what was
//! wrong and, where there is one, what to do about it. No message ever contains key material.

use std::fmt;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An object, snapshot, key or path that was asked for does not exist.
    NotFound,
    /// There is no repository at the given location.
    NoRepository,
    /// A repository already exists where one was to be created.
    AlreadyExists,
    /// Bytes failed authentication, a hash did not match, or a structure did not decode.
    Corrupt,
    /// No key slot opens with the given passphrase or recovery key.
    WrongPassword,
    /// The repository or an object uses a format version this build does not know.
    UnsupportedVersion,
    /// The object store failed (network, permissions, service error).
    Store,
    /// A local file-system operation failed.
    Io,
    /// The caller asked for something invalid (bad option, bad snapshot id, ...).
    InvalidInput,
}

/// The library's error: a kind plus a human-readable message with context.
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retryable: false,
        }
    }

    /// Shorthand for a [`ErrorKind::Corrupt`] error.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for a [`ErrorKind::InvalidInput`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for a [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// An I/O error with the path or operation it concerns.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        let kind = if err.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        let retryable = matches!(
            err.kind(),
            std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut
        );
        Error {
            kind,
            message: format!("{context}: {err}"),
            retryable,
        }
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Whether repeating the operation may succeed (transient store or I/O failure).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The same error with `context` put in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<object_store::Error> for Error {
    fn from(err: object_store::Error) -> Self {
        let text = format!("{err}");
        if let Some(hint) = store_hint(&err, &text) {
            return Error {
                kind: ErrorKind::Store,
                message: format!("{hint} ({text})"),
                retryable: false,
            };
        }
        let (kind, retryable) = match &err {
            object_store::Error::NotFound { .. } => (ErrorKind::NotFound, false),
            object_store::Error::AlreadyExists { .. } => (ErrorKind::AlreadyExists, false),
            object_store::Error::Generic { .. } => (ErrorKind::Store, true),
            _ => (ErrorKind::Store, false),
        };
        Error {
            kind,
            message: format!("object store: {text}"),
            retryable,
        }
    }
}

/// Says in plain words what a storage failure that will not heal by itself means.
fn store_hint(err: &object_store::Error, text: &str) -> Option<&'static str> {
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&["NoSuchBucket"]) {
        return Some("the bucket does not exist: create it first, or check the repository URL");
    }
    let credentials = matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
    ]);
    if credentials {
        return Some(
            "the storage service refused the credentials: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or the service's own variables) and the key's rights on the bucket",
        );
    }
    if has(&[
        "Connection refused",
        "tcp connect error",
        "dns error",
        "error trying to connect",
        "error sending request",
    ]) {
        return Some(
            "cannot reach the storage endpoint: is the server running, and is the endpoint URL right?",
        );
    }
    None
}

/// Adds context to results, like `anyhow::Context` but keeping the kind.
pub trait ResultExt<T> {
    /// Prefix the error message with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.context(context))
    }
}
