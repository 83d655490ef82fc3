//! Idempotent writes to Redis: hashes and sorted-set members, pipelined per batch.

use ferroflow_core::{Error, Result, Sink, SinkContext};
use std::sync::Arc;
use std::time::Duration;

/// One write a record becomes. Writes are overwrites of fields and members, so writing
/// a record twice (after a restore replays it) leaves what writing it once did.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisWrite {
    /// `HSET key field value ...`, then `EXPIRE key ttl` if a ttl is given.
    Hash {
        /// The hash's key.
        key: String,
        /// Fields and values.
        fields: Vec<(String, String)>,
        /// Expiry after this write.
        ttl: Option<Duration>,
    },
    /// `ZADD key score member`, then `EXPIRE key ttl` if a ttl is given.
    SortedSet {
        /// The sorted set's key.
        key: String,
        /// The member.
        member: String,
        /// Its score.
        score: f64,
        /// Expiry after this write.
        ttl: Option<Duration>,
    },
}

type ToWrites<T> = Arc<dyn Fn(&T) -> Vec<RedisWrite> + Send + Sync>;

/// Writes each record as the [`RedisWrite`]s `to_writes` makes of it: one pipeline per
/// batch, sent before the batch counts as written (so nothing is buffered across a
/// checkpoint barrier). A failed pipeline is sent again on a new connection after
/// 100 ms, 400 ms and 1.6 s; then the job fails with the error (retryable, so a restart
/// strategy may restore and replay).
pub struct RedisHashSink<T> {
    url: String,
    to_writes: ToWrites<T>,
    retries: u32,
    conn: Option<redis::Connection>,
}

impl<T> Clone for RedisHashSink<T> {
    /// A sink to the same server, not yet connected.
    fn clone(&self) -> Self {
        Self {
            url: self.url.clone(),
            to_writes: Arc::clone(&self.to_writes),
            retries: self.retries,
            conn: None,
        }
    }
}

impl<T> RedisHashSink<T> {
    /// A sink to the server at `url` (`redis://127.0.0.1:6379/0`).
    pub fn new(
        url: impl Into<String>,
        to_writes: impl Fn(&T) -> Vec<RedisWrite> + Send + Sync + 'static,
    ) -> Self {
        Self {
            url: url.into(),
            to_writes: Arc::new(to_writes),
            retries: 3,
            conn: None,
        }
    }

    fn connect(&self) -> Result<redis::Connection> {
        let err =
            |e: redis::RedisError| super::redis_error(e, format!("connecting to {}", self.url));
        redis::Client::open(self.url.as_str())
            .map_err(err)?
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(err)
    }

    fn pipeline(&self, batch: &[T]) -> (redis::Pipeline, usize) {
        let mut p = redis::pipe();
        let mut n = 0;
        let expire = |p: &mut redis::Pipeline, key: &str, ttl: &Option<Duration>| {
            if let Some(ttl) = ttl {
                let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
                p.expire(key, secs).ignore();
            }
        };
        for record in batch {
            for w in (self.to_writes)(record) {
                n += 1;
                match &w {
                    RedisWrite::Hash { key, fields, ttl } => {
                        if fields.is_empty() {
                            continue;
                        }
                        p.hset_multiple(key, fields).ignore();
                        expire(&mut p, key, ttl);
                    }
                    RedisWrite::SortedSet {
                        key,
                        member,
                        score,
                        ttl,
                    } => {
                        p.zadd(key, member, *score).ignore();
                        expire(&mut p, key, ttl);
                    }
                }
            }
        }
        (p, n)
    }
}

impl<T: Send + 'static> Sink<T> for RedisHashSink<T> {
    fn name(&self) -> String {
        "redis".into()
    }

    fn open(&mut self, _ctx: &SinkContext) -> Result<()> {
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        let (pipe, writes) = self.pipeline(&batch);
        if writes == 0 {
            return Ok(());
        }
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let result = match self.conn.as_mut() {
                Some(c) => pipe.exec(c),
                None => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "not connected",
                ))),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt < self.retries => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Redis write failed; retrying.");
                    std::thread::sleep(delay);
                    delay *= 4;
                    // A broken connection is replaced; a failed reconnect is retried too.
                    self.conn = self.connect().ok();
                }
                Err(e) => {
                    let mut error =
                        super::redis_error(e, format!("writing {writes} commands to {}", self.url));
                    if let Error::External { retryable, .. } = &mut error {
                        *retryable = true;
                    }
                    return Err(error);
                }
            }
        }
    }
}
