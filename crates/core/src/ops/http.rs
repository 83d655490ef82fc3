//! The job's HTTP listener: one thread with a small tokio runtime, serving the status
//! page, the JSON endpoints, Prometheus text and the probes (see the module above).

use super::rates::{self, Rates};
use super::status::JobStatus;
use crate::{Error, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use metrics_exporter_prometheus::PrometheusHandle;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The status page: one file, no build step.
const PAGE: &str = include_str!("page.html");
/// How often the counters are sampled for rates.
const SAMPLE: Duration = Duration::from_secs(1);

struct State {
    job: Arc<JobStatus>,
    prometheus: Option<PrometheusHandle>,
    rates: Mutex<Rates>,
}

/// A running listener; dropping it stops it.
pub(crate) struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on (with the port chosen, if `:0` was asked for).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `listen` now (so a taken port fails the job's start) and serves `job` on a
/// thread of its own.
pub(crate) fn serve(
    listen: SocketAddr,
    job: Arc<JobStatus>,
    prometheus: Option<PrometheusHandle>,
) -> Result<Server> {
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| Error::io(format!("listening on {listen} (metrics.listen)"), e))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("configuring the HTTP listener", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the HTTP listener's address", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::io("starting the HTTP listener's runtime", e))?;
    let state = Arc::new(State {
        job,
        prometheus,
        rates: Mutex::new(Rates::default()),
    });
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("ff-http".into())
        .spawn(move || runtime.block_on(run(listener, state, rx)))
        .map_err(|e| Error::io("spawning the HTTP listener", e))?;
    tracing::info!(%addr, "Serving metrics, status page and probes.");
    Ok(Server {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn run(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "HTTP listener failed to start.");
            return;
        }
    };
    let sampler = tokio::spawn(sample(Arc::clone(&state)));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, std::convert::Infallible>(route(&state, req).await) }
                        });
                        let io = hyper_util::rt::TokioIo::new(stream);
                        if let Err(e) = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                        {
                            tracing::debug!(error = %e, "HTTP connection ended with an error.");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting an HTTP connection failed.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    sampler.abort();
}

/// Samples the counters for rates, keeps the uptime gauge, and runs the recorder's
/// upkeep (which bounds its histograms' memory).
async fn sample(state: Arc<State>) {
    let uptime = metrics::gauge!(super::status::UPTIME);
    let mut tick = tokio::time::interval(SAMPLE);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        state
            .rates
            .lock()
            .sample(Instant::now(), state.job.metrics.snapshot());
        uptime.set(state.job.started.elapsed().as_secs_f64());
        n += 1;
        if n.is_multiple_of(5) {
            if let Some(p) = &state.prometheus {
                p.run_upkeep();
            }
        }
    }
}

async fn route(state: &Arc<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/") => respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()),
        (&Method::GET, "/metrics") => match &state.prometheus {
            Some(p) => respond(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                p.render(),
            ),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "another metrics recorder was installed in this process first; its exporter serves the metrics\n".into(),
            ),
        },
        (&Method::GET, "/jobs") => json(StatusCode::OK, &jobs(state)),
        (&Method::GET, "/checkpoints") => json(StatusCode::OK, &state.job.checkpoints.view()),
        (&Method::POST, "/savepoints") => {
            // Drain the body (none expected) so the connection stays usable.
            let _ = req.into_body().collect().await;
            let job = Arc::clone(&state.job);
            match tokio::task::spawn_blocking(move || job.savepoint(false)).await {
                Ok(Ok(path)) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "path": path.display().to_string() }),
                ),
                Ok(Err(e)) => json(
                    StatusCode::CONFLICT,
                    &serde_json::json!({ "error": e.to_string() }),
                ),
                Err(e) => json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({ "error": e.to_string() }),
                ),
            }
        }
        (&Method::GET, "/livez") => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => match state.job.ready() {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("not ready: {why}\n"),
            ),
        },
        (_, "/" | "/metrics" | "/jobs" | "/checkpoints" | "/livez" | "/readyz" | "/savepoints") => {
            respond(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n".into(),
            )
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// The body of `/jobs`.
fn jobs(state: &State) -> serde_json::Value {
    let job = &state.job;
    let topology = job.topology();
    let views = state.rates.lock().operators();
    let stages = rates::stages(&topology, |s| job.metrics.stage_operators(s), views);
    let located = rates::locate(&topology, &stages);
    serde_json::json!({
        "name": job.name,
        "state": job.state(),
        "started_at_ms": job.started_at_ms,
        "uptime_ms": u64::try_from(job.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "restarts": job.restarts(),
        "checkpointing": job.checkpoint_interval.is_some(),
        "stages": stages,
        "edges": topology.edges.iter().map(|(from, to)| serde_json::json!({"from": from, "to": to})).collect::<Vec<_>>(),
        "backpressure": located,
        "errors": job.errors(),
    })
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    match serde_json::to_string(body) {
        Ok(text) => respond(status, "application/json", text),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("encoding JSON: {e}\n"),
        ),
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    response
}
