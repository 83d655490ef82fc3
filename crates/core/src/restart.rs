//! Restart strategies: what a job does when a task fails.
//!
//! With a strategy other than `none`, a failed job is rebuilt in the same process and
//! restored from its newest completed checkpoint (or from what it first started from,
//! when no checkpoint completed yet), after a delay the strategy decides. Each restart is
//! counted (`ferroflow_restarts_total`, the status page). When the strategy's budget is
//! spent the job ends with the last error. An error no restart can fix
//! ([`Error::is_fatal`]: configuration, state that cannot be restored) ends it at once. The options follow Flink's
//! `restart-strategy.*`:
//!
//! ```toml
//! [restart]
//! type = "exponential-delay"   # or "fixed-delay", "failure-rate", "none", "auto"
//! initial_backoff = "1s"
//! max_backoff = "1m"
//! ```

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// What happens when a task fails. Default: [`RestartStrategy::Auto`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum RestartStrategy {
    /// Exponential delay with its defaults when checkpointing is on (as Flink since 1.19),
    /// no restart otherwise.
    #[default]
    Auto,
    /// The first failure ends the job.
    None,
    /// Up to `attempts` restarts, `delay` apart.
    FixedDelay(FixedDelay),
    /// Restarts while no more than `max_failures_per_interval` failures fall within any
    /// `failure_rate_interval`.
    FailureRate(FailureRate),
    /// Restarts after a delay that grows by `backoff_multiplier` per failure, up to
    /// `max_backoff`, with random jitter; it starts over once the job ran
    /// `reset_backoff_threshold` without failing.
    ExponentialDelay(ExponentialDelay),
}

/// Options of [`RestartStrategy::FixedDelay`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixedDelay {
    /// Restarts before the job fails. Default: 3.
    pub attempts: u32,
    /// Wait before each restart. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

impl Default for FixedDelay {
    fn default() -> Self {
        Self {
            attempts: 3,
            delay: Duration::from_secs(1),
        }
    }
}

/// Options of [`RestartStrategy::FailureRate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureRate {
    /// Failures allowed within one interval. Default: 1.
    pub max_failures_per_interval: u32,
    /// The sliding interval. Default: 1 min.
    #[serde(with = "humantime_serde")]
    pub failure_rate_interval: Duration,
    /// Wait before each restart. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

impl Default for FailureRate {
    fn default() -> Self {
        Self {
            max_failures_per_interval: 1,
            failure_rate_interval: Duration::from_secs(60),
            delay: Duration::from_secs(1),
        }
    }
}

/// Options of [`RestartStrategy::ExponentialDelay`] (Flink's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExponentialDelay {
    /// First delay. Default: 1 s.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest delay. Default: 1 min.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Growth per failure. Default: 1.5.
    pub backoff_multiplier: f64,
    /// A run this long without failure starts the backoff over. Default: 1 h.
    #[serde(with = "humantime_serde")]
    pub reset_backoff_threshold: Duration,
    /// Each delay is moved by up to this fraction, at random, so that many jobs failing
    /// on one outage do not come back in step. Default: 0.1.
    pub jitter_factor: f64,
    /// Restarts before the job fails, counted since the last reset. Default: unlimited.
    pub attempts_before_reset_backoff: u32,
}

impl Default for ExponentialDelay {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            backoff_multiplier: 1.5,
            reset_backoff_threshold: Duration::from_secs(3600),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: u32::MAX,
        }
    }
}

impl RestartStrategy {
    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::Config`] naming the option.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::ExponentialDelay(e) => {
                if !(e.backoff_multiplier >= 1.0 && e.backoff_multiplier.is_finite()) {
                    return Err(Error::Config(format!(
                        "restart.backoff_multiplier must be at least 1, got {}",
                        e.backoff_multiplier
                    )));
                }
                if !(0.0..=1.0).contains(&e.jitter_factor) {
                    return Err(Error::Config(format!(
                        "restart.jitter_factor must be in 0..=1, got {}",
                        e.jitter_factor
                    )));
                }
                if e.initial_backoff > e.max_backoff {
                    return Err(Error::Config(
                        "restart.initial_backoff exceeds restart.max_backoff".into(),
                    ));
                }
                Ok(())
            }
            Self::FailureRate(f) if f.failure_rate_interval.is_zero() => Err(Error::Config(
                "restart.failure_rate_interval must be longer than 0s".into(),
            )),
            _ => Ok(()),
        }
    }

    /// The strategy in effect: `auto` resolved by whether checkpointing is on.
    pub(crate) fn resolve(&self, checkpointing: bool) -> Self {
        match self {
            Self::Auto if checkpointing => Self::ExponentialDelay(ExponentialDelay::default()),
            Self::Auto => Self::None,
            other => other.clone(),
        }
    }
}

/// Counts failures against a resolved strategy and says how long to wait before the
/// next restart, or that the budget is spent.
#[derive(Debug)]
pub(crate) struct Restarts {
    strategy: RestartStrategy,
    /// Restarts so far (fixed delay), or since the last reset (exponential).
    attempts: u32,
    /// Failure times within the window (failure rate).
    failures: VecDeque<Instant>,
    /// The next exponential delay before jitter.
    backoff: Duration,
}

impl Restarts {
    pub(crate) fn new(strategy: RestartStrategy) -> Self {
        let backoff = match &strategy {
            RestartStrategy::ExponentialDelay(e) => e.initial_backoff,
            _ => Duration::ZERO,
        };
        Self {
            strategy,
            attempts: 0,
            failures: VecDeque::new(),
            backoff,
        }
    }

    /// A failure at `now` after the attempt ran for `ran`: the delay before restarting,
    /// or `None` when the job must end.
    pub(crate) fn on_failure(&mut self, now: Instant, ran: Duration) -> Option<Duration> {
        match &self.strategy {
            RestartStrategy::Auto | RestartStrategy::None => None,
            RestartStrategy::FixedDelay(f) => {
                if self.attempts >= f.attempts {
                    return None;
                }
                self.attempts += 1;
                Some(f.delay)
            }
            RestartStrategy::FailureRate(f) => {
                self.failures.push_back(now);
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > f.failure_rate_interval)
                {
                    self.failures.pop_front();
                }
                let in_window = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
                (in_window <= f.max_failures_per_interval).then_some(f.delay)
            }
            RestartStrategy::ExponentialDelay(e) => {
                if ran >= e.reset_backoff_threshold {
                    self.backoff = e.initial_backoff;
                    self.attempts = 0;
                }
                if self.attempts >= e.attempts_before_reset_backoff {
                    return None;
                }
                self.attempts += 1;
                let base = self.backoff;
                self.backoff = base.mul_f64(e.backoff_multiplier).min(e.max_backoff);
                Some(jitter(base, e.jitter_factor))
            }
        }
    }
}

/// `d` moved by a random fraction in `-factor..=factor`.
fn jitter(d: Duration, factor: f64) -> Duration {
    if factor <= 0.0 {
        return d;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    // A uniform draw in [0, 1) from the hasher's random keys.
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    let scale = 1.0 + factor * (2.0 * unit - 1.0);
    d.mul_f64(scale.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_delay_allows_its_attempts_then_ends() {
        let mut r = Restarts::new(RestartStrategy::FixedDelay(FixedDelay {
            attempts: 2,
            delay: Duration::from_millis(5),
        }));
        let now = Instant::now();
        assert_eq!(
            r.on_failure(now, Duration::ZERO),
            Some(Duration::from_millis(5))
        );
        assert_eq!(
            r.on_failure(now, Duration::ZERO),
            Some(Duration::from_millis(5))
        );
        assert_eq!(r.on_failure(now, Duration::ZERO), None);
    }

    #[test]
    fn failure_rate_counts_only_the_window() {
        let mut r = Restarts::new(RestartStrategy::FailureRate(FailureRate {
            max_failures_per_interval: 2,
            failure_rate_interval: Duration::from_secs(10),
            delay: Duration::ZERO,
        }));
        let t0 = Instant::now();
        assert!(r.on_failure(t0, Duration::ZERO).is_some());
        assert!(r
            .on_failure(t0 + Duration::from_secs(1), Duration::ZERO)
            .is_some());
        // A third within 10 s is one too many...
        let mut again = Restarts::new(r.strategy.clone());
        again.failures = r.failures.clone();
        assert!(again
            .on_failure(t0 + Duration::from_secs(2), Duration::ZERO)
            .is_none());
        // ...but not once the first two fell out of the window.
        assert!(r
            .on_failure(t0 + Duration::from_secs(30), Duration::ZERO)
            .is_some());
    }

    #[test]
    fn exponential_grows_caps_jitters_and_resets() {
        let e = ExponentialDelay {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
            backoff_multiplier: 2.0,
            reset_backoff_threshold: Duration::from_secs(60),
            jitter_factor: 0.1,
            attempts_before_reset_backoff: 10,
        };
        let mut r = Restarts::new(RestartStrategy::ExponentialDelay(e));
        let now = Instant::now();
        let ms: Vec<u128> = (0..5)
            .map(|_| {
                r.on_failure(now, Duration::ZERO)
                    .map_or(0, |d| d.as_millis())
            })
            .collect();
        for (got, base) in ms.iter().zip([100u128, 200, 400, 400, 400]) {
            assert!(
                *got >= base * 9 / 10 && *got <= base * 11 / 10,
                "{ms:?} against base {base}"
            );
        }
        // A long healthy run starts over at the initial backoff.
        let d = r
            .on_failure(now, Duration::from_secs(61))
            .map(|d| d.as_millis());
        assert!(d.is_some_and(|d| (90..=110).contains(&d)), "{d:?}");
    }

    #[test]
    fn exponential_ends_after_its_attempts() {
        let mut r = Restarts::new(RestartStrategy::ExponentialDelay(ExponentialDelay {
            attempts_before_reset_backoff: 1,
            ..ExponentialDelay::default()
        }));
        assert!(r.on_failure(Instant::now(), Duration::ZERO).is_some());
        assert!(r.on_failure(Instant::now(), Duration::ZERO).is_none());
    }

    #[test]
    fn auto_depends_on_checkpointing_and_toml_reads() {
        assert_eq!(RestartStrategy::Auto.resolve(false), RestartStrategy::None);
        assert!(matches!(
            RestartStrategy::Auto.resolve(true),
            RestartStrategy::ExponentialDelay(_)
        ));
        let s: RestartStrategy =
            serde_json::from_str(r#"{"type": "fixed-delay", "attempts": 5, "delay": "2s"}"#)
                .unwrap();
        assert_eq!(
            s,
            RestartStrategy::FixedDelay(FixedDelay {
                attempts: 5,
                delay: Duration::from_secs(2)
            })
        );
        let s: RestartStrategy =
            serde_json::from_str(r#"{"type": "exponential-delay", "max_backoff": "5m"}"#).unwrap();
        let RestartStrategy::ExponentialDelay(e) = s else {
            panic!("{s:?}")
        };
        assert_eq!(e.max_backoff, Duration::from_secs(300));
        assert_eq!(e.initial_backoff, Duration::from_secs(1));
        let bad = serde_json::from_str::<RestartStrategy>(r#"{"type": "fixed-delay", "tries": 1}"#);
        assert!(bad.is_err());
        let bad = RestartStrategy::ExponentialDelay(ExponentialDelay {
            backoff_multiplier: 0.5,
            ..ExponentialDelay::default()
        });
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("multiplier"));
    }
}
