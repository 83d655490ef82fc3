//! Errors of the state layer.

/// Result of state operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error raised by keyed state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A state name was registered twice with different kinds or types.
    #[error("state `{name}` is already registered as {existing}; it cannot be redeclared as {requested}")]
    StateConflict {
        /// The state name.
        name: String,
        /// What it was registered as first.
        existing: String,
        /// What the second declaration asked for.
        requested: String,
    },
    /// A handle was used with a store that did not create it, or with another key type.
    #[error(
        "state handle #{id} does not belong to this keyed store (or is used with another key type)"
    )]
    HandleMismatch {
        /// The handle's table index.
        id: u32,
    },
    /// State could not be encoded or decoded (a type changed between snapshot and restore,
    /// for example).
    #[error("state codec: {0}")]
    Codec(String),
    /// A snapshot is damaged: truncated, bad checksum, unknown format.
    #[error("corrupt state snapshot {0}")]
    Corrupt(String),
    /// Reading or writing a snapshot failed.
    #[error("state I/O: {0}")]
    Io(String),
    /// A descriptor or configuration value is invalid.
    #[error("invalid state configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Whether retrying the failed operation could succeed: only I/O errors may be
    /// transient; the others are programming, configuration or data errors.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io(_))
    }
}
