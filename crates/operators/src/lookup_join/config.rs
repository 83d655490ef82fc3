//! Settings of a lookup join.

use ferroflow_core::{AsyncConfig, Error, OnTimeout, Result, Zone};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Which records a join emits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinType {
    /// Every record, with its row or (after the last attempt) without. Default.
    #[default]
    Left,
    /// Only records with a row; the others go to the unmatched output.
    Inner,
}

/// Where rows are kept between lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Nothing is kept: every record's key is looked up (batched and coalesced still).
    None,
    /// Rows looked up are kept, bounded and expiring (Flink's `PARTIAL`). Default.
    #[default]
    Partial,
    /// Each worker holds its share of the whole table, reloaded (Flink's `FULL`).
    Full,
}

impl CacheMode {
    /// The mode as written in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Partial => "partial",
            Self::Full => "full",
        }
    }
}

/// What a lookup that takes longer than [`LookupJoinConfig::lookup_timeout`] becomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLookupTimeout {
    /// Retried with backoff (as a refused connection is), up to
    /// [`AsyncConfig::max_retries`]; then the job fails. Default.
    #[default]
    Retry,
    /// The job fails at once.
    Fail,
    /// The records are given up on at once (a left join emits them without a row).
    Unmatched,
}

/// How records whose key was not found are tried again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MissRetry {
    /// Lookups after the first before a record is given up on; 0 gives up at the first
    /// miss. Default: 3.
    pub attempts: u32,
    /// Delay before the first retry. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Each delay this many times the one before (1: fixed delay). Default: 2.
    pub multiplier: f64,
    /// Longest delay. Default: 1 min.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for MissRetry {
    fn default() -> Self {
        Self {
            attempts: 3,
            delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(60),
        }
    }
}

impl MissRetry {
    /// The delay before lookup `attempt + 1`, after lookup `attempt` (1-based) missed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay)
    }
}

/// When a full cache loads its table again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadConfig {
    /// Reload this long after the last load started (`1h`). Default: none.
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Reload every day at this local time (`"02:30"`) in `timezone`. Default: none.
    pub at: Option<String>,
    /// The zone of `at`. Default: UTC.
    pub timezone: Zone,
    /// Ask the table for its version this often and reload when it changed (a file
    /// rewritten, say); none: never ask. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub watch_interval: Option<Duration>,
    /// Longest the first load may take before the job fails to start. Default: 5 min.
    #[serde(with = "humantime_serde")]
    pub first_load_timeout: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            interval: None,
            at: None,
            timezone: Zone::utc(),
            watch_interval: Some(Duration::from_secs(10)),
            first_load_timeout: Duration::from_secs(300),
        }
    }
}

impl ReloadConfig {
    /// `at` as (hour, minute).
    pub(super) fn at_time(&self) -> Result<Option<(i8, i8)>> {
        let Some(at) = &self.at else {
            return Ok(None);
        };
        let bad = || {
            Error::Config(format!(
                "lookup join: reload.at `{at}` is not a time like 02:30"
            ))
        };
        let (h, m) = at.split_once(':').ok_or_else(bad)?;
        let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if !(0..24).contains(&h) || !(0..60).contains(&m) {
            return Err(bad());
        }
        Ok(Some((h, m)))
    }
}

/// Settings of a lookup join. Every field has a default; in TOML, durations are written
/// as `10s`, `5m`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LookupJoinConfig {
    /// Left or inner. Default: left. ([`super::LookupJoin::left`] and
    /// [`super::LookupJoin::inner`] set it.)
    pub join: JoinType,
    /// Key the stream by the join key before the lookup, so each worker caches only its
    /// own keys. Default: true.
    pub partitioned: bool,
    /// Where rows are kept. Default: partial.
    pub cache: CacheMode,
    /// Rows the partial cache holds at most. Default: 100,000.
    pub cache_rows: u64,
    /// Bytes the partial cache holds at most (rows weighed by their serialized size plus
    /// 64 bytes); when set, replaces `cache_rows`. Default: none.
    pub cache_bytes: Option<u64>,
    /// A row is looked up again this long after it was loaded. Default: 10 min.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Option<Duration>,
    /// A row not read for this long leaves the cache (reads are noted to within an
    /// eighth of this time, so it may leave up to that much sooner). Default: none.
    #[serde(with = "humantime_serde")]
    pub cache_idle: Option<Duration>,
    /// How long a key found missing is remembered as missing (0: not at all). Retries
    /// skip it. Default: 10 s.
    #[serde(with = "humantime_serde")]
    pub miss_ttl: Duration,
    /// Retries of keys not found. Default: 3 attempts from 1 s, doubling.
    pub retry: MissRetry,
    /// Longest one request to the store may take. Default: 5 s.
    #[serde(with = "humantime_serde")]
    pub lookup_timeout: Duration,
    /// What a request that times out becomes. Default: retry.
    pub on_timeout: OnLookupTimeout,
    /// Full cache: when to reload.
    pub reload: ReloadConfig,
    /// Requests in flight per worker (default 64), keys per request (default 128),
    /// unanswered records per worker including held ones (default 100,000), order of
    /// output (default: as answered), retries of failed requests (default 5, from
    /// 100 ms) and what a barrier does with requests in flight (default: snapshot them).
    #[serde(rename = "async")]
    pub async_: AsyncConfig,
}

impl Default for LookupJoinConfig {
    fn default() -> Self {
        Self {
            join: JoinType::Left,
            partitioned: true,
            cache: CacheMode::Partial,
            cache_rows: 100_000,
            cache_bytes: None,
            cache_ttl: Some(Duration::from_secs(600)),
            cache_idle: None,
            miss_ttl: Duration::from_secs(10),
            retry: MissRetry::default(),
            lookup_timeout: Duration::from_secs(5),
            on_timeout: OnLookupTimeout::Retry,
            reload: ReloadConfig::default(),
            async_: AsyncConfig::default(),
        }
    }
}

impl LookupJoinConfig {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: &str| Err(Error::Config(format!("lookup join: {why}")));
        self.async_.validate()?;
        if self.cache == CacheMode::Partial && (self.cache_rows == 0 || self.cache_bytes == Some(0))
        {
            return bad("cache_rows and cache_bytes must be at least 1");
        }
        if self.lookup_timeout.is_zero() {
            return bad("lookup_timeout must be positive");
        }
        if self.lookup_timeout >= self.async_.timeout {
            return bad("lookup_timeout must be shorter than async.timeout");
        }
        if !(self.retry.multiplier >= 1.0 && self.retry.multiplier.is_finite()) {
            return bad("retry.multiplier must be at least 1");
        }
        if self.retry.attempts > 0 && self.retry.delay.is_zero() {
            return bad("retry.delay must be positive");
        }
        if self.reload.interval.is_some_and(|d| d.is_zero())
            || self.reload.watch_interval.is_some_and(|d| d.is_zero())
        {
            return bad("reload intervals must be positive");
        }
        self.reload.at_time()?;
        Ok(())
    }

    /// The async operator's settings: a lookup that times out is handled by the join
    /// itself, so the operator's own timeout only catches a store that never answers.
    pub(super) fn async_config(&self) -> AsyncConfig {
        let mut config = self.async_.clone();
        if self.on_timeout == OnLookupTimeout::Fail {
            config.on_timeout = OnTimeout::Fail;
        }
        config
    }
}
