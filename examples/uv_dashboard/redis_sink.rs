//! Current UV/PV values in Redis, for dashboards that read them directly.
//!
//! Key layout: one hash per (grain, bucket, dimensions),
//!
//! ```text
//! <prefix>:<grain>:<bucket>:<dims>   fields uv, pv, final (0/1), until (cumulative grains)
//! ```
//!
//! where `<dims>` is `all` for the whole site or `field=value` pairs joined by `,` in field
//! order (`platform=app,province=guangdong`), and `<bucket>` is its RFC 3339 start. For
//! each bucket, a sorted set `<prefix>:<grain>:<bucket>:index` lists its hashes (so a
//! dashboard can read one bucket's dimensions without `SCAN`), and every key expires
//! `ttl_secs` after its last write. The default prefix is `uv`.
//!
//! Writes are pipelined per batch and retried three times (100 ms, 400 ms, 1.6 s) before
//! the job fails with the error. They are idempotent overwrites with the latest values:
//! after a restore the replayed rows write the same values again, so Redis converges to
//! exactly the output's values (while the replay runs, a key may briefly show an older
//! value).

use ferroflow::operators::uv::{Dims, UvOutput};
use ferroflow::prelude::*;
use ferroflow::{Error, SinkContext};
use std::time::Duration;

/// Writes rows to Redis; see the module documentation.
pub struct RedisSink {
    url: String,
    prefix: String,
    ttl_secs: u64,
    conn: Option<redis::Connection>,
}

impl Clone for RedisSink {
    /// A sink to the same server, not yet connected.
    fn clone(&self) -> Self {
        Self::new(self.url.clone(), self.prefix.clone(), self.ttl_secs)
    }
}

impl RedisSink {
    /// A sink to the server at `url` (`redis://127.0.0.1:6379/0`).
    pub fn new(url: impl Into<String>, prefix: impl Into<String>, ttl_secs: u64) -> Self {
        Self {
            url: url.into(),
            prefix: prefix.into(),
            ttl_secs,
            conn: None,
        }
    }

    /// The hash key of a row's (grain, bucket, dims).
    pub fn key(prefix: &str, grain: &str, bucket: &str, dims: &Dims) -> String {
        let dims = if dims.is_empty() {
            "all".to_string()
        } else {
            dims.iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        format!("{prefix}:{grain}:{bucket}:{dims}")
    }

    fn connect(&self) -> Result<redis::Connection> {
        let err = |e: redis::RedisError| Error::User {
            source: format!("connecting to Redis at {}: {e}", self.url).into(),
            retryable: true,
        };
        let client = redis::Client::open(self.url.as_str()).map_err(err)?;
        client
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(err)
    }

    fn pipeline(&self, rows: &[UvOutput]) -> redis::Pipeline {
        let mut p = redis::pipe();
        for o in rows {
            let UvOutput::Row(r) = o else { continue };
            let key = Self::key(&self.prefix, &r.grain, &r.bucket, &r.dims);
            let index = format!("{}:{}:{}:index", self.prefix, r.grain, r.bucket);
            p.hset_multiple(
                &key,
                &[
                    ("uv", r.uv.to_string()),
                    ("pv", r.pv.to_string()),
                    ("final", u8::from(r.is_final).to_string()),
                ],
            )
            .ignore();
            if let Some(until) = &r.until {
                p.hset(&key, "until", until.as_str()).ignore();
            }
            p.zadd(&index, &key, r.uv).ignore();
            if self.ttl_secs > 0 {
                let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
                p.expire(&key, ttl).ignore();
                p.expire(&index, ttl).ignore();
            }
        }
        p
    }
}

impl Sink<UvOutput> for RedisSink {
    fn name(&self) -> String {
        "redis".into()
    }

    fn open(&mut self, _ctx: &SinkContext) -> Result<()> {
        self.conn = Some(self.connect()?);
        Ok(())
    }

    fn write(&mut self, batch: Vec<UvOutput>) -> Result<()> {
        if !batch.iter().any(|o| matches!(o, UvOutput::Row(_))) {
            return Ok(());
        }
        let pipe = self.pipeline(&batch);
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
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "Redis write failed; retrying.");
                    std::thread::sleep(delay);
                    delay *= 4;
                    // A broken connection is replaced; a failed reconnect is retried too.
                    self.conn = self.connect().ok();
                }
                Err(e) => {
                    return Err(Error::User {
                        source: format!(
                            "writing {} rows to Redis at {}: {e}",
                            batch.len(),
                            self.url
                        )
                        .into(),
                        retryable: true,
                    })
                }
            }
        }
    }
}
