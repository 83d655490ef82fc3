//! Job configuration.

use crate::restart::RestartStrategy;
use crate::{Error, Result};
use ferroflow_state::{DEFAULT_MAX_PARALLELISM, MAX_MAX_PARALLELISM};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Configuration of a stream environment. Every field has a default; a TOML or JSON file
/// may set any subset (`#[serde(default)]`), and unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvConfig {
    /// The job's name: the `job_name` label of its metrics and the title of its status
    /// page. Default: `ferroflow`.
    pub name: String,
    /// Workers per operator chain. Default: the number of CPUs.
    pub parallelism: usize,
    /// Number of key groups: the upper bound of parallelism for keyed state, fixed for the
    /// life of the job's state. Default: 128.
    pub max_parallelism: u16,
    /// Records per batch passed between operators and workers. Default: 4096.
    ///
    /// With a channel of 2 batches, a sender held by backpressure is woken once per
    /// 4096 records. Measured against 1024 records and 8 batches (the same records in
    /// flight) on the benches, alternating the builds (`BENCHMARKS.md`, machine F):
    /// the dashboard 0.38-0.42 M events per CPU-second against 0.30-0.31 M, the full
    /// lookup join 12.4-13.3 M against 10.5-11.0 M, the HLL count unchanged.
    pub batch_size: usize,
    /// Batches a channel between two workers holds before the sender blocks
    /// (backpressure). Default: 2.
    pub channel_capacity: usize,
    /// Longest a partly filled batch may wait in an exchange before it is sent anyway
    /// (`5ms` in files). Default: 5 ms.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Time between watermark emissions of a source task (Flink's
    /// `pipeline.auto-watermark-interval`); `0s` emits after every batch. Default: 200 ms.
    #[serde(with = "humantime_serde")]
    pub watermark_interval: Duration,
    /// How long a source task sleeps when none of its splits has data. Default: 500 µs.
    #[serde(with = "humantime_serde")]
    pub idle_sleep: Duration,
    /// Threads of the job's I/O runtime, on which operators that wait on I/O (lookups,
    /// uploads) run their calls; started only if such an operator runs. Default: 2.
    pub io_threads: usize,
    /// Stop the job gracefully on SIGINT/SIGTERM (a second signal exits at once).
    /// Default: true.
    pub handle_signals: bool,
    /// Start even when the restored checkpoint or savepoint holds state of operators the
    /// job no longer has (their state is dropped). Off, such a restore fails naming them:
    /// an operator whose id changed would otherwise start empty. Default: false.
    pub allow_non_restored_state: bool,
    /// What a SIGINT/SIGTERM does when `handle_signals` is on. Default: `drain`.
    pub on_signal: OnSignal,
    /// The HTTP listener for Prometheus metrics, the status page, its JSON endpoints and
    /// the health probes. Default: off.
    pub metrics: MetricsConfig,
    /// What happens when a task fails. Default: `auto` (exponential delay with
    /// checkpointing on, no restart without).
    pub restart: RestartStrategy,
}

/// What a stop signal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnSignal {
    /// Sources stop reading; everything read is processed and flushed (no savepoint).
    #[default]
    Drain,
    /// Stop with a savepoint ([`crate::JobHandle::stop_with_savepoint`]): the state at the
    /// stop is kept in `<checkpoint dir>/savepoint-<n>` for the next version of the job.
    /// Needs checkpointing; without it the job drains.
    Savepoint,
}

/// The job's HTTP listener (see `docs/operations.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to serve `/metrics` (Prometheus), the status page at `/`, `/jobs`,
    /// `/checkpoints`, `/livez` and `/readyz` on, such as `127.0.0.1:9249`. Default:
    /// none (no listener, no Prometheus recorder installed).
    pub listen: Option<std::net::SocketAddr>,
    /// `/readyz` fails when the newest completed checkpoint is older than this (with
    /// checkpointing on). Default: three checkpoint intervals.
    #[serde(with = "humantime_serde")]
    pub ready_checkpoint_age: Option<Duration>,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            parallelism: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_parallelism: DEFAULT_MAX_PARALLELISM,
            batch_size: 4096,
            channel_capacity: 2,
            linger: Duration::from_millis(5),
            watermark_interval: Duration::from_millis(200),
            idle_sleep: Duration::from_micros(500),
            io_threads: 2,
            handle_signals: true,
            name: "ferroflow".into(),
            allow_non_restored_state: false,
            on_signal: OnSignal::Drain,
            metrics: MetricsConfig::default(),
            restart: RestartStrategy::default(),
        }
    }
}

impl EnvConfig {
    /// Checks every field; returns the first problem found.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.parallelism == 0 {
            return Err(Error::Config("parallelism must be at least 1".into()));
        }
        if self.max_parallelism == 0 || self.max_parallelism > MAX_MAX_PARALLELISM {
            return Err(Error::Config(format!(
                "max_parallelism must be in 1..={MAX_MAX_PARALLELISM}, got {}",
                self.max_parallelism
            )));
        }
        if self.parallelism > usize::from(self.max_parallelism) {
            return Err(Error::Config(format!(
                "parallelism {} exceeds max_parallelism {}",
                self.parallelism, self.max_parallelism
            )));
        }
        if self.batch_size == 0 {
            return Err(Error::Config("batch_size must be at least 1".into()));
        }
        if self.channel_capacity == 0 {
            return Err(Error::Config("channel_capacity must be at least 1".into()));
        }
        if self.io_threads == 0 {
            return Err(Error::Config("io_threads must be at least 1".into()));
        }
        self.restart.validate()
    }

    /// Sets `parallelism`.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets `max_parallelism`.
    #[must_use]
    pub fn with_max_parallelism(mut self, max_parallelism: u16) -> Self {
        self.max_parallelism = max_parallelism;
        self
    }

    /// Sets `batch_size`.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Sets `channel_capacity`.
    #[must_use]
    pub fn with_channel_capacity(mut self, channel_capacity: usize) -> Self {
        self.channel_capacity = channel_capacity;
        self
    }

    /// Sets `linger`.
    #[must_use]
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets `watermark_interval`.
    #[must_use]
    pub fn with_watermark_interval(mut self, interval: Duration) -> Self {
        self.watermark_interval = interval;
        self
    }

    /// Sets `io_threads`.
    #[must_use]
    pub fn with_io_threads(mut self, io_threads: usize) -> Self {
        self.io_threads = io_threads;
        self
    }

    /// Sets `name`.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Serves metrics, the status page and the probes on `addr` (`metrics.listen`).
    #[must_use]
    pub fn with_http(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics.listen = Some(addr);
        self
    }

    /// Sets the restart strategy.
    #[must_use]
    pub fn with_restart(mut self, restart: RestartStrategy) -> Self {
        self.restart = restart;
        self
    }

    /// Sets `allow_non_restored_state`.
    #[must_use]
    pub fn with_allow_non_restored_state(mut self, allow: bool) -> Self {
        self.allow_non_restored_state = allow;
        self
    }

    /// Sets what a stop signal does.
    #[must_use]
    pub fn with_on_signal(mut self, on_signal: OnSignal) -> Self {
        self.on_signal = on_signal;
        self
    }

    /// Sets `handle_signals`.
    #[must_use]
    pub fn with_signal_handling(mut self, handle_signals: bool) -> Self {
        self.handle_signals = handle_signals;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        EnvConfig::default().validate().unwrap();
        let e = EnvConfig::default()
            .with_parallelism(0)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("parallelism"));
        let e = EnvConfig::default()
            .with_parallelism(300)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("exceeds max_parallelism"), "{e}");
        assert!(EnvConfig::default().with_batch_size(0).validate().is_err());
    }

    #[test]
    fn durations_read_as_text() {
        let c: EnvConfig =
            serde_json::from_str(r#"{"linger": "20ms", "watermark_interval": "1s"}"#).unwrap();
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.watermark_interval, Duration::from_secs(1));
        assert_eq!(c.idle_sleep, Duration::from_micros(500));
        let e = serde_json::from_str::<EnvConfig>(r#"{"linger": "soon"}"#).unwrap_err();
        assert!(e.to_string().contains("expected a duration"), "{e}");
        let text = serde_json::to_string(&EnvConfig::default()).unwrap();
        assert!(text.contains(r#""linger":"5ms""#), "{text}");
    }
}
