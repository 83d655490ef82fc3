//! What the example jobs share: logging, and the files next to their outputs.
// Each example uses a different part of this module.
#![allow(dead_code)]

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// The jobs allocate through mimalloc. A job allocates and frees many small objects on
/// several threads at once (keys, rows, batches handed between workers); glibc's
/// allocator spends much of such a job's time in its own bookkeeping. Measured on the
/// benches of these jobs (machine F in `BENCHMARKS.md`): the dashboard's events per
/// CPU-second rise by half, the Redis lookup join's by a third, for more resident
/// memory. ferroflow, a library, picks no allocator: a job of yours chooses its own.
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
