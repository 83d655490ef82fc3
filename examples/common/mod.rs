//! What the example jobs share: logging, and the files next to their outputs.
// Each example uses a different part of this module.
#![allow(dead_code)]

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The jobs allocate through mimalloc, without transparent huge pages (its `no_thp`
/// feature: with them, each thread's first pages cost resident memory in 2 MiB steps).
/// A job allocates and frees many small objects on several threads at once (keys, rows,
/// batches handed between workers), and glibc's allocator spends much of such a job's
/// time in its own bookkeeping. Measured on the benches of these jobs, alternating the
/// two allocators (machine F in `BENCHMARKS.md`): the dashboard 0.47-0.48 M events per
/// CPU-second against 0.31-0.32 M, the Redis lookup join 0.96-0.98 M against
/// 0.67-0.72 M, the exact UV count 7.4-7.6 M against 6.5-6.8 M; resident memory 54 MB
/// against 38 MB (dashboard) and 75 MB against 46 MB (exact UV). ferroflow, a library,
/// picks no allocator: a job of yours chooses its own.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, at `warn` unless `RUST_LOG` says otherwise.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// `path` with `suffix` added to its file name (`out.jsonl` → `out.jsonl.parts`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes `dir` and what it holds, if it is there.
pub fn remove_dir_if_exists(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// The job's settings: `parallelism` workers, `name` on its metrics and status page, and
/// with `http` the listener for metrics, the status page and probes.
pub fn env_config(
    name: &str,
    parallelism: usize,
    http: Option<std::net::SocketAddr>,
) -> ferroflow::EnvConfig {
    let config = ferroflow::EnvConfig::default()
        .with_name(name)
        .with_parallelism(parallelism);
    match http {
        Some(addr) => {
            tracing::info!(%addr, "Status page at http://{addr}/");
            config.with_http(addr)
        }
        None => config,
    }
}
