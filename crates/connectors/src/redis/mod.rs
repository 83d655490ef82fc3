//! Redis (feature `redis`): a lookup source for dimension rows
//! ([`RedisLookup`]), and a sink of idempotent hash writes ([`RedisHashSink`]).

mod hash;
mod lookup;
mod sink;

pub use lookup::{RedisLookup, RedisRow};
pub use sink::{RedisHashSink, RedisWrite};

use ferroflow_core::{Error, Result};
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// A connection made on first use, inside the job's I/O runtime, that reconnects by
/// itself after the server went away.
pub(crate) struct RedisConnection {
    client: redis::Client,
    manager: OnceCell<ConnectionManager>,
}

impl RedisConnection {
    pub(crate) fn new(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::Config(format!("redis url `{url}`: {e}")))?;
        Ok(Self {
            client,
            manager: OnceCell::new(),
        })
    }

    /// The connection (a cheap clone of the shared one).
    pub(crate) async fn get(&self) -> Result<ConnectionManager> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
                    .set_response_timeout(Some(std::time::Duration::from_secs(5)))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .map_err(|e| redis_error(e, "connecting".into()))?;
        Ok(manager.clone())
    }
}

/// A Redis error as the job sees it: retryable when the connection failed or timed out.
pub(crate) fn redis_error(e: redis::RedisError, context: String) -> Error {
    let retryable = e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error();
    Error::External {
        system: "redis".into(),
        context,
        source: e.into(),
        retryable,
    }
}
