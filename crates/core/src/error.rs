//! Errors of the core runtime.

use std::io;

/// Result of runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from user code or a dependency.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error that stops a job, or that a configuration or builder call reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value or a job graph is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A task failed; `source` says why.
    #[error("task `{task}` failed: {source}")]
    Task {
        /// The task (`operator-chain[worker/parallelism]`).
        task: String,
        /// The underlying error.
        #[source]
        source: Box<Error>,
    },
    /// User code panicked (wrapped in [`Error::Task`], which names the task).
    #[error("panic: {message}")]
    Panic {
        /// The panic message.
        message: String,
    },
    /// An error returned by user code.
    #[error("{source}")]
    User {
        /// The user's error.
        #[source]
        source: BoxError,
        /// Whether the user marked it as retryable.
        retryable: bool,
    },
    /// An error from keyed state.
    #[error(transparent)]
    State(#[from] ferroflow_state::Error),
    /// An I/O error; `context` names the file or operation.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Input that cannot be decoded, when no dead-letter output is configured.
    #[error("malformed record at {location}: {reason}")]
    Malformed {
        /// Where the record was (file and line, topic and offset, …).
        location: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// Checkpoint storage (an object store) failed.
    #[error("checkpoint storage {context}: {source}")]
    Storage {
        /// What was being done, and where.
        context: String,
        /// The store's error.
        source: BoxError,
        /// Whether trying again may succeed (a network error, a throttled request).
        retryable: bool,
    },
    /// The job was cancelled because another task failed.
    #[error("cancelled")]
    Cancelled,
}

impl Error {
    /// An error from user code that is not retryable.
    pub fn user(source: impl Into<BoxError>) -> Self {
        Error::User {
            source: source.into(),
            retryable: false,
        }
    }

    /// An error from user code that a restart may get past (a timeout, a lost connection).
    pub fn retryable(source: impl Into<BoxError>) -> Self {
        Error::User {
            source: source.into(),
            retryable: true,
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether restarting the job (or retrying the operation) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Task { source, .. } => source.is_retryable(),
            Error::User { retryable, .. } | Error::Storage { retryable, .. } => *retryable,
            Error::State(e) => e.is_retryable(),
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::BrokenPipe
            ),
            Error::Config(_) | Error::Panic { .. } | Error::Malformed { .. } | Error::Cancelled => {
                false
            }
        }
    }

    /// The innermost error, looking through [`Error::Task`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Task { source, .. } => source.root(),
            e => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability() {
        assert!(!Error::Config("x".into()).is_retryable());
        assert!(Error::retryable("timeout").is_retryable());
        assert!(!Error::user("bad").is_retryable());
        let e = Error::Task {
            task: "t".into(),
            source: Box::new(Error::io("write", io::Error::from(io::ErrorKind::TimedOut))),
        };
        assert!(e.is_retryable());
        assert!(matches!(e.root(), Error::Io { .. }));
        assert!(e.to_string().contains("task `t` failed: write"), "{e}");
    }
}
