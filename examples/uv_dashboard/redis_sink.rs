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
//! Writes go through the library's [`RedisHashSink`]: pipelined per batch, retried three
//! times (100 ms, 400 ms, 1.6 s) before the job fails with the error. They are
//! idempotent overwrites with the latest values:
//! after a restore the replayed rows write the same values again, so Redis converges to
//! exactly the output's values (while the replay runs, a key may briefly show an older
//! value).

use ferroflow::connectors::redis::{RedisHashSink, RedisWrite};
use ferroflow::operators::uv::{Dims, UvOutput};
use std::time::Duration;

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

/// A sink to the server at `url` (`redis://127.0.0.1:6379/0`) writing rows under
/// `prefix`, every key expiring `ttl_secs` after its last write (0: never).
pub fn sink(url: &str, prefix: &str, ttl_secs: u64) -> RedisHashSink<UvOutput> {
    let prefix = prefix.to_string();
    let ttl = (ttl_secs > 0).then(|| Duration::from_secs(ttl_secs));
    RedisHashSink::new(url, move |o: &UvOutput| {
        let UvOutput::Row(r) = o else {
            return Vec::new();
        };
        let hash = key(&prefix, &r.grain, &r.bucket, &r.dims);
        let mut fields = vec![
            ("uv".to_string(), r.uv.to_string()),
            ("pv".to_string(), r.pv.to_string()),
            ("final".to_string(), u8::from(r.is_final).to_string()),
        ];
        if let Some(until) = &r.until {
            fields.push(("until".to_string(), until.to_string()));
        }
        vec![
            RedisWrite::SortedSet {
                key: format!("{prefix}:{}:{}:index", r.grain, r.bucket),
                member: hash.clone(),
                score: r.uv as f64,
                ttl,
            },
            RedisWrite::Hash {
                key: hash,
                fields,
                ttl,
            },
        ]
    })
}
