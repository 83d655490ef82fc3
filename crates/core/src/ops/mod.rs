//! Running a job in production: its status (state, restarts, errors, checkpoints), the
//! Prometheus recorder, and the HTTP listener that serves them (`metrics.listen`).
//!
//! | path | what |
//! |---|---|
//! | `/` | the status page (HTML, refreshes itself from the JSON endpoints) |
//! | `/metrics` | Prometheus text: everything recorded through the `metrics` facade |
//! | `/jobs` | JSON: the job, its graph, per-operator rates, located backpressure, last errors |
//! | `/checkpoints` | JSON: checkpoint counts and history |
//! | `POST /savepoints` | takes a savepoint; JSON with its path |
//! | `/livez` | 200 while the process serves |
//! | `/readyz` | 200 when the job runs and (with checkpointing) a checkpoint completed recently |

mod http;
mod rates;
mod status;

pub(crate) use http::{serve, Server};
pub(crate) use status::{JobStatus, Topology};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// The process's Prometheus recorder, installed by the first job that listens.
static RECORDER: OnceLock<Option<(String, PrometheusHandle)>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) with `job_name` as a label on
/// every series. `None` when another recorder was installed first: its own exporter then
/// serves the facade's metrics, and `/metrics` says so.
pub(crate) fn install_prometheus(job_name: &str) -> Option<PrometheusHandle> {
    let installed = RECORDER.get_or_init(|| {
        match PrometheusBuilder::new()
            .add_global_label("job_name", job_name)
            .install_recorder()
        {
            Ok(handle) => Some((job_name.to_string(), handle)),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot install the Prometheus recorder; /metrics will be empty.");
                None
            }
        }
    });
    let (name, handle) = installed.as_ref()?;
    if name != job_name {
        tracing::warn!(
            first = %name,
            job = %job_name,
            "A second job in this process: its metrics carry the first job's job_name label."
        );
    }
    Some(handle.clone())
}
