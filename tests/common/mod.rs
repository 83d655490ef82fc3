//! Helpers shared by the scenario tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod counting;
#[cfg(feature = "hdfs")]
pub mod hdfs;
#[cfg(feature = "hive")]
pub mod hive;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "object-store")]
pub mod s3;

use ferroflow::connectors::{ClickEvent, GeneratorConfig, GeneratorSource};
use ferroflow::{EnvConfig, Error, StreamEnvironment};
use std::sync::atomic::{AtomicU64, Ordering};

/// The example binary `name`, built by `cargo test` / `cargo nextest run` beside the
/// tests.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(std::path::Path::parent).unwrap();
    let bin = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test` or `cargo nextest run`, which build the examples",
        bin.display()
    );
    bin
}

/// The folder of jars a Java server runs from: `$<var>` if set, else
/// `~/.cache/<cache>/jars` if it holds `marker`; panics saying how to get them (`bash
/// scripts/test` fetches them and sets `<var>`) or which server of your own `instead`
/// names.
pub fn jars(var: &str, cache: &str, marker: &str, instead: &str) -> String {
    let cached = std::env::var("HOME")
        .map(|h| format!("{h}/.cache/{cache}/jars"))
        .ok()
        .filter(|d| std::path::Path::new(d).join(marker).is_file());
    std::env::var(var).ok().or(cached).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run `bash scripts/test` (it fetches the jars and sets it), \
             or set {instead}"
        )
    })
}

/// Records the job's sources emitted, over every worker.
pub fn records_read(result: &ferroflow::JobResult) -> u64 {
    result
        .metrics
        .iter()
        .filter(|m| m.operator.starts_with("source"))
        .map(|m| m.records_out)
        .sum()
}

/// A loopback port nothing listens on now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An environment for tests: `parallelism` workers, small batches so that exchanges and
/// watermarks are exercised, no signal handling.
pub fn env(parallelism: usize) -> StreamEnvironment {
    StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(parallelism)
            .with_batch_size(128)
            .with_signal_handling(false)
            // Failures here must end the job: restarts have tests of their own.
            .with_restart(ferroflow::RestartStrategy::None),
    )
}

/// Every event of a generator configuration, in stream order.
pub fn all_events(config: &GeneratorConfig) -> Vec<ClickEvent> {
    let src = GeneratorSource::new(config.clone()).expect("valid config");
    (0..config.events).map(|i| src.event(i)).collect()
}

/// Up to ten keys on which two result maps differ, for assertion messages.
pub fn differences<K: std::fmt::Debug + Ord, V: std::fmt::Debug + PartialEq>(
    got: &std::collections::BTreeMap<K, V>,
    want: &std::collections::BTreeMap<K, V>,
) -> Vec<String> {
    let keys: std::collections::BTreeSet<&K> = got.keys().chain(want.keys()).collect();
    keys.into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .take(10)
        .map(|k| format!("{k:?}: got {:?}, want {:?}", got.get(k), want.get(k)))
        .collect()
}

/// The newest complete checkpoint (`chk-<n>` with its `_metadata`) under `dir`.
pub fn newest_checkpoint_dir(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.path().join("_metadata").is_file())
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("chk-")?
                .parse::<u64>()
                .ok()?;
            Some((n, e.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, p)| p)
}

/// Runs the test `child_test` of this test binary in a child process with `var` set to
/// `dir`, and kills it with SIGKILL once `checkpoints` holds checkpoint `n` (complete).
/// Fails if the child makes no checkpoint within 30 s or ends first.
pub fn kill_after_checkpoint(
    child_test: &str,
    var: &str,
    dir: &std::path::Path,
    checkpoints: &std::path::Path,
    n: u64,
) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([child_test, "--exact", "--nocapture"])
        .env(var, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let number = |p: std::path::PathBuf| -> Option<u64> {
        p.file_name()?.to_str()?.strip_prefix("chk-")?.parse().ok()
    };
    let t = std::time::Instant::now();
    while newest_checkpoint_dir(checkpoints)
        .and_then(number)
        .unwrap_or(0)
        < n
    {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(30),
            "the child job made no checkpoint"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child job ended early"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// A `try_map` function that passes records through and, when `n` is set, fails the job
/// at the `n`-th record it sees (counted from 1, over every worker).
pub fn fail_after<T: Send + 'static>(
    n: Option<u64>,
) -> impl Fn(T) -> ferroflow::Result<T> + Send + Sync + 'static {
    let seen = AtomicU64::new(0);
    move |record| {
        let count = seen.fetch_add(1, Ordering::SeqCst) + 1;
        if Some(count) == n {
            return Err(Error::user(format!(
                "injected failure after {count} records"
            )));
        }
        Ok(record)
    }
}

/// Runs a left lookup join of `input` (sequence number, key) at parallelism `p`; returns
/// each record's (sequence number, row) in sequence order.
pub fn left_join<K, V>(
    p: usize,
    input: Vec<(u64, K)>,
    join: ferroflow::operators::lookup_join::LookupJoin<K, V>,
) -> Vec<(u64, Option<V>)>
where
    K: ferroflow::operators::lookup_join::LookupKey,
    V: Clone + serde::Serialize + Send + Sync + 'static,
{
    use ferroflow::operators::lookup_join::Joined;
    let env = env(p);
    let out = ferroflow::sinks::CollectSink::<Joined<(u64, K), V>>::new();
    join.left(env.from_iter(input), |c: &(u64, K)| c.1.clone())
        .unwrap()
        .sink(out.clone());
    env.execute().unwrap();
    let mut rows: Vec<_> = out.take().into_iter().map(|j| (j.event.0, j.dim)).collect();
    rows.sort_by_key(|r| r.0);
    rows
}
