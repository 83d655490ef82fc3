//! Errors of the core runtime.

use std::io;

/// Result of runtime operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A boxed error from user code or a dependency.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Where an error comes from, which says who can fix it: [`Error::domain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorDomain {
    /// A setting or the job graph: fix the configuration or the job's code.
    Config,
    /// The user's function returned an error or panicked.
    User,
    /// A system outside the job (a broker, a database, object storage, the local disk)
    /// failed; often retryable.
    External,
    /// Data that cannot be decoded or encoded (a malformed record, a state or sketch of
    /// another format).
    Data,
    /// A checkpoint cannot be taken, found or restored.
    Checkpoint,
    /// Keyed state failed (its own kinds say more).
    State,
    /// A broken invariant inside ferroflow: a bug to report.
    Internal,
    /// The job was stopped because another task failed.
    Cancelled,
}

/// Data that cannot be decoded or encoded: a record for a sink, a consumed record, a
/// sketch, a committable. Its text is what went wrong followed by the codec's own error
/// (which dead-letter outputs record in full), and [`CodecError::cause`] keeps that error.
#[derive(Debug)]
pub struct CodecError {
    message: String,
    cause: Option<BoxError>,
}

impl CodecError {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            cause: None,
        }
    }

    /// An error that says what was being decoded or encoded, with the codec's error.
    pub fn with_source(message: impl Into<String>, cause: impl Into<BoxError>) -> Self {
        Self {
            message: message.into(),
            cause: Some(cause.into()),
        }
    }

    /// What went wrong, without the codec's error.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The codec's own error, if any.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CodecError {}

/// An error that stops a job, or that a configuration or builder call reports. Each says
/// its [`ErrorDomain`] and whether trying again may succeed ([`Error::is_retryable`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value or a job graph is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system outside the job failed: a broker, a database, a cache.
    #[error("{system} {context}: {source}")]
    External {
        /// The system (`redis`, `postgres`, `kafka`...).
        system: String,
        /// What was being done, and on what.
        context: String,
        /// The system's error.
        #[source]
        source: BoxError,
        /// Whether trying again may succeed (a refused connection, a timeout).
        retryable: bool,
    },
    /// Data that cannot be decoded or encoded.
    #[error("{context}: {source}")]
    Codec {
        /// Where: the operator, file or topic.
        context: String,
        /// The codec's error.
        #[source]
        source: CodecError,
    },
    /// A checkpoint cannot be taken, found or restored.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// A broken invariant inside ferroflow.
    #[error("internal error (please report it): {0}")]
    Internal(String),
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

    /// An error of an external system.
    pub fn external(
        system: impl Into<String>,
        context: impl Into<String>,
        source: impl Into<BoxError>,
        retryable: bool,
    ) -> Self {
        Error::External {
            system: system.into(),
            context: context.into(),
            source: source.into(),
            retryable,
        }
    }

    /// Data that cannot be decoded or encoded, at `context`.
    pub fn codec(context: impl Into<String>, source: CodecError) -> Self {
        Error::Codec {
            context: context.into(),
            source,
        }
    }

    /// Where the error comes from (looking through [`Error::Task`]).
    pub fn domain(&self) -> ErrorDomain {
        match self.root() {
            Error::Config(_) => ErrorDomain::Config,
            Error::User { .. } | Error::Panic { .. } => ErrorDomain::User,
            Error::External { .. } | Error::Io { .. } | Error::Storage { .. } => {
                ErrorDomain::External
            }
            Error::Codec { .. } | Error::Malformed { .. } => ErrorDomain::Data,
            Error::Checkpoint(_) => ErrorDomain::Checkpoint,
            Error::State(_) => ErrorDomain::State,
            Error::Internal(_) | Error::Task { .. } => ErrorDomain::Internal,
            Error::Cancelled => ErrorDomain::Cancelled,
        }
    }

    /// Whether restarting the job (or retrying the operation) could succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Task { source, .. } => source.is_retryable(),
            Error::User { retryable, .. }
            | Error::Storage { retryable, .. }
            | Error::External { retryable, .. } => *retryable,
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
            Error::Config(_)
            | Error::Panic { .. }
            | Error::Malformed { .. }
            | Error::Codec { .. }
            | Error::Checkpoint(_)
            | Error::Internal(_)
            | Error::Cancelled => false,
        }
    }

    /// Whether no restart can fix it: a configuration error, or state that cannot be
    /// restored (a state's type changed, a damaged snapshot). A restart strategy ends the
    /// job at once on such an error instead of failing the same way again and again.
    pub fn is_fatal(&self) -> bool {
        match self.root() {
            Error::Config(_) => true,
            Error::State(e) => !e.is_retryable(),
            _ => false,
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
        assert_eq!(e.domain(), ErrorDomain::External);
        let refused = Error::external(
            "redis",
            "MGET dim:item:1",
            io::Error::from(io::ErrorKind::ConnectionRefused),
            true,
        );
        assert!(refused.is_retryable());
        assert_eq!(refused.domain(), ErrorDomain::External);
        assert!(
            refused.to_string().starts_with("redis MGET dim:item:1"),
            "{refused}"
        );
        let bad = Error::codec("sink `out`", CodecError::new("not UTF-8"));
        assert_eq!(bad.domain(), ErrorDomain::Data);
        assert!(!bad.is_retryable());
        assert_eq!(Error::Internal("x".into()).domain(), ErrorDomain::Internal);
        assert_eq!(Error::user("x").domain(), ErrorDomain::User);
        assert_eq!(
            Error::Checkpoint("x".into()).domain(),
            ErrorDomain::Checkpoint
        );
    }
}
