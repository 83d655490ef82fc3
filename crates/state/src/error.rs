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
    /// A descriptor or configuration value is invalid.
    #[error("invalid state configuration: {0}")]
    InvalidConfig(String),
}

impl Error {
    /// Whether retrying the failed operation could succeed. Every state error here is a
    /// programming or configuration error, so none is retryable.
    pub fn is_retryable(&self) -> bool {
        false
    }
}
