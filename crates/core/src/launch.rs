//! Starting a job, in the order data flows: check the graph, connect the exchanges and
//! sources, find what to restore, start the checkpoint coordinator, build each worker's
//! tasks, and run them.

use crate::checkpoint::coordinator::{next_checkpoint_id, CheckpointHub, Coordinator};
use crate::checkpoint::{dir_name, load_checkpoint, restorable_checkpoints, Remote, METADATA};
use crate::graph::{Graph, PrepareCtx, Restored, WorkerCtx};
use crate::metrics::JobMetrics;
use crate::ops::{JobStatus, Topology};
use crate::runtime::control::JobControl;
use crate::runtime::io::IoRuntime;
use crate::runtime::task::{run_task, Task};
use crate::{Error, RestoreFrom, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// One attempt at running the job: its tasks' threads, its checkpoint coordinator.
pub(crate) struct Attempt {
    pub(crate) control: Arc<JobControl>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) coordinator: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    pub(crate) started: Instant,
}

impl Attempt {
    pub(crate) fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for every thread; returns the attempt's error, if it failed.
    pub(crate) fn wait(&mut self) -> Option<Error> {
        for t in self.threads.drain(..) {
            // Tasks catch their own panics; a join error cannot carry anything new.
            let _ = t.join();
        }
        if let Some((t, done)) = self.coordinator.take() {
            done.store(true, Ordering::Release);
            let _ = t.join();
        }
        self.control.take_error()
    }
}

/// Starts one attempt of `graph`: a first run, or a restart (the graph's sources and
/// exchanges are prepared anew each time). `stop` is the job's stop flag, shared by
/// every attempt.
pub(crate) fn launch(
    graph: &mut Graph,
    job: &Arc<JobStatus>,
    stop: &Arc<AtomicBool>,
) -> Result<Attempt> {
    let parallelism = check(graph)?;
    job.set_topology(Topology {
        stages: graph
            .stages
            .iter()
            .zip(&parallelism)
            .map(|(s, p)| (s.name.clone(), *p))
            .collect(),
        edges: graph.exchanges.iter().map(|e| (e.from, e.to)).collect(),
    });
    connect(graph, &parallelism)?;
    let (remote, restored) = find_restore(graph)?;
    let control = Arc::new(JobControl::with_stop(Arc::clone(stop)));
    let checkpoints = prepare_checkpoints(graph, &parallelism, &control, remote, &restored, job)?;
    let tasks = build_tasks(
        graph,
        &parallelism,
        &control,
        &job.metrics,
        checkpoints.as_ref().map(|c| &c.hub),
        restored.clone(),
    )?;
    if let Some(r) = &restored {
        check_restored_operators(r, &job.metrics, graph.config.allow_non_restored_state)?;
    }
    tracing::info!(
        tasks = tasks.len(),
        parallelism = graph.config.parallelism,
        state_backend = graph.backend.name(),
        "Job starting."
    );
    let started = Instant::now();
    let threads = spawn_tasks(tasks, &control);
    let (hub, coordinator) = match checkpoints {
        Some(c) => (
            Some(c.hub),
            spawn_coordinator(c.coordinator, c.done, &control),
        ),
        None => (None, None),
    };
    job.running(Arc::clone(&control), hub);
    Ok(Attempt {
        control,
        threads,
        coordinator,
        started,
    })
}

/// Checks the graph and settings; returns the parallelism of each stage.
fn check(graph: &Graph) -> Result<Vec<usize>> {
    graph.config.validate()?;
    if let Some(e) = graph.errors.first() {
        return Err(Error::Config(e.clone()));
    }
    if graph.stages.is_empty() {
        return Err(Error::Config(
            "the job has no streams (define a source first)".into(),
        ));
    }
    if let Some(s) = graph.stages.iter().find(|s| s.factory.is_none()) {
        return Err(Error::Config(format!(
            "stream `{}` does not end in a sink or exchange",
            s.name
        )));
    }
    let default_p = graph.config.parallelism;
    let parallelism: Vec<usize> = graph
        .stages
        .iter()
        .map(|s| s.parallelism.unwrap_or(default_p))
        .collect();
    if let Some(p) = parallelism
        .iter()
        .find(|p| **p > usize::from(graph.config.max_parallelism))
    {
        return Err(Error::Config(format!(
            "parallelism {p} exceeds max_parallelism {}",
            graph.config.max_parallelism
        )));
    }
    if let Some(config) = &graph.checkpoint {
        config.validate()?;
    }
    Ok(parallelism)
}

/// Creates the channels of every exchange and the splits of every source.
fn connect(graph: &mut Graph, parallelism: &[usize]) -> Result<()> {
    let capacity = graph.config.channel_capacity;
    for ex in &mut graph.exchanges {
        (ex.prepare)(&PrepareCtx {
            parallelism: parallelism[ex.from],
            downstream_parallelism: parallelism[ex.to],
            capacity,
        })?;
    }
    for (i, stage) in graph.stages.iter_mut().enumerate() {
        if let Some(prepare) = &mut stage.prepare {
            prepare(&PrepareCtx {
                parallelism: parallelism[i],
                downstream_parallelism: parallelism[i],
                capacity,
            })?;
        }
    }
    Ok(())
}

/// Checkpoint storage (if any) and the checkpoint to restore (if any).
type StorageAndRestore = (Option<Arc<Remote>>, Option<Arc<Restored>>);

/// Opens checkpoint storage (if any) and loads the checkpoint to restore (if any).
fn find_restore(graph: &Graph) -> Result<StorageAndRestore> {
    let remote = match &graph.checkpoint {
        Some(config) => Remote::open(config)?.map(Arc::new),
        None => None,
    };
    let restored = resolve_restore(graph, remote.as_deref())?.map(Arc::new);
    Ok((remote, restored))
}

/// The checkpoint coordinator, not started yet, and the hub tasks talk to it through.
struct Checkpoints {
    coordinator: Coordinator,
    hub: Arc<CheckpointHub>,
    done: Arc<AtomicBool>,
}

/// With checkpointing on: the checkpoint directory and a coordinator whose first
/// checkpoint number follows every earlier one (local, stored, and restored).
fn prepare_checkpoints(
    graph: &Graph,
    parallelism: &[usize],
    control: &Arc<JobControl>,
    remote: Option<Arc<Remote>>,
    restored: &Option<Arc<Restored>>,
    job: &JobStatus,
) -> Result<Option<Checkpoints>> {
    let Some(config) = &graph.checkpoint else {
        return Ok(None);
    };
    std::fs::create_dir_all(&config.dir).map_err(|e| {
        Error::io(
            format!("creating checkpoint directory {}", config.dir.display()),
            e,
        )
    })?;
    let task_count: usize = graph
        .stages
        .iter()
        .zip(parallelism)
        .filter(|(s, _)| s.factory.is_some())
        .map(|(_, p)| *p)
        .sum();
    let restored_id = restored.as_ref().map_or(0, |r| r.meta.id);
    let stored_next = match &remote {
        Some(r) => r.next_checkpoint_id()?,
        None => 1,
    };
    let first = next_checkpoint_id(&config.dir)
        .max(stored_next)
        .max(restored_id + 1);
    let (coordinator, hub, done) = Coordinator::new(
        config.clone(),
        task_count,
        graph.config.max_parallelism,
        first,
        Arc::clone(control),
        remote,
        Arc::clone(&job.checkpoints),
    );
    Ok(Some(Checkpoints {
        coordinator,
        hub,
        done,
    }))
}

/// The number of a new run of a job ([`SinkContext::attempt`](crate::SinkContext)): its
/// start time in epoch milliseconds, or one more than the last run this process started
/// if that is not lower. Sinks name their temporary files and transactions by it, so two
/// runs must never share one: a restart within the same millisecond (a job that fails at
/// once, restarted without delay), or after the clock stepped back, would otherwise write
/// over the files its predecessor's restored checkpoint still names.
fn next_attempt() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(crate::now_millis()).unwrap_or(0);
    let next = |last: u64| now.max(last.saturating_add(1));
    match LAST.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
        Some(next(last))
    }) {
        Ok(last) | Err(last) => next(last),
    }
}

/// Builds every worker's task of every stage.
fn build_tasks(
    graph: &Graph,
    parallelism: &[usize],
    control: &Arc<JobControl>,
    metrics: &JobMetrics,
    hub: Option<&Arc<CheckpointHub>>,
    restored: Option<Arc<Restored>>,
) -> Result<Vec<Box<dyn Task>>> {
    let attempt = next_attempt();
    let io = IoRuntime::new(graph.config.io_threads);
    let mut tasks: Vec<Box<dyn Task>> = Vec::new();
    for (i, stage) in graph.stages.iter().enumerate() {
        let Some(factory) = &stage.factory else {
            continue;
        };
        for worker in 0..parallelism[i] {
            let ctx = WorkerCtx {
                stage: i,
                worker,
                parallelism: parallelism[i],
                task: tasks.len(),
                config: graph.config.clone(),
                control: Arc::clone(control),
                metrics: metrics.clone(),
                backend: Arc::clone(&graph.backend),
                checkpoint: hub.cloned(),
                restored: restored.clone(),
                attempt,
                io: Arc::clone(&io),
            };
            tasks.push(factory(&ctx)?);
        }
    }
    Ok(tasks)
}

/// Fails when the restored checkpoint holds state of an operator this job does not have
/// (unless `allow` drops it, with a warning): an operator whose uid changed would
/// otherwise start empty without a word.
fn check_restored_operators(restored: &Restored, metrics: &JobMetrics, allow: bool) -> Result<()> {
    let known = metrics.operator_names();
    let meta = &restored.meta;
    let mut missing: Vec<(String, &'static str)> = Vec::new();
    let mut note = |op: &str, what: &'static str| {
        if !known.contains(op) && !missing.iter().any(|(o, _)| o == op) {
            missing.push((op.to_string(), what));
        }
    };
    meta.state_files
        .iter()
        .for_each(|f| note(&f.operator, "keyed state"));
    meta.operator_states
        .iter()
        .for_each(|s| note(&s.operator, "operator state"));
    meta.sink_commits
        .iter()
        .for_each(|c| note(&c.operator, "pending sink commits"));
    meta.positions
        .iter()
        .for_each(|p| note(&p.operator, "source positions"));
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing
        .iter()
        .map(|(op, what)| format!("`{op}` ({what})"))
        .collect::<Vec<_>>()
        .join(", ");
    if allow {
        tracing::warn!(checkpoint = meta.id, operators = %list, "Restored state of operators this job does not have is dropped (allow_non_restored_state).");
        return Ok(());
    }
    Err(Error::Config(format!(
        "checkpoint {} holds state of operators this job does not have: {list}. Give the \
         operators that should have it the same uid (`.uid(\"...\")`), or set \
         allow_non_restored_state to start without it",
        meta.id
    )))
}

/// Runs each task on a thread of its own.
fn spawn_tasks(tasks: Vec<Box<dyn Task>>, control: &Arc<JobControl>) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::with_capacity(tasks.len());
    for task in tasks {
        let task_control = Arc::clone(control);
        let name = task.name().to_string();
        let spawned = std::thread::Builder::new()
            .name(thread_name(&name))
            .spawn(move || run_task(task, &task_control));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                control.fail(&name, Error::io("spawning a worker thread", e));
                break;
            }
        }
    }
    threads
}

fn spawn_coordinator(
    coordinator: Coordinator,
    done: Arc<AtomicBool>,
    control: &JobControl,
) -> Option<(JoinHandle<()>, Arc<AtomicBool>)> {
    let spawned = std::thread::Builder::new()
        .name("ff-checkpoints".into())
        .spawn(move || coordinator.run());
    match spawned {
        Ok(t) => Some((t, done)),
        Err(e) => {
            control.fail(
                "checkpoint-coordinator",
                Error::io("spawning the checkpoint coordinator", e),
            );
            None
        }
    }
}

/// Finds and loads the checkpoint to restore, per the job's [`RestoreFrom`]. With
/// checkpoint storage, checkpoints are listed there and fetched into the local directory.
fn resolve_restore(graph: &Graph, remote: Option<&Remote>) -> Result<Option<Restored>> {
    let (loaded, root) = match &graph.restore {
        RestoreFrom::Nothing => return Ok(None),
        RestoreFrom::Path(dir) => {
            let dir = match (remote, &graph.checkpoint) {
                (Some(remote), Some(config)) if !dir.join(METADATA).is_file() => {
                    // Not here: fetch it from storage by its name.
                    remote.fetch(&dir_name(dir), &config.dir)?
                }
                _ => dir.clone(),
            };
            let root = dir
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            (load_checkpoint(&dir)?, root)
        }
        RestoreFrom::Latest { fallback } => {
            let Some(config) = &graph.checkpoint else {
                return Err(Error::Config(
                    "restoring the latest checkpoint needs checkpointing enabled (to know the directory)".into(),
                ));
            };
            let candidates = match remote {
                Some(remote) => remote.restorable_checkpoints()?,
                None => restorable_checkpoints(&config.dir)?
                    .into_iter()
                    .map(|(n, dir)| (n, dir_name(&dir)))
                    .collect(),
            };
            let place =
                remote.map_or_else(|| config.dir.display().to_string(), |r| r.url().to_string());
            if candidates.is_empty() {
                tracing::info!(checkpoints = %place, "No checkpoint to restore; starting with empty state.");
                return Ok(None);
            }
            let mut loaded = None;
            for (_, name) in &candidates {
                let attempt = match remote {
                    Some(remote) => remote.fetch(name, &config.dir),
                    None => Ok(config.dir.join(name)),
                }
                .and_then(|dir| load_checkpoint(&dir));
                match attempt {
                    Ok(meta) => {
                        loaded = Some(meta);
                        break;
                    }
                    Err(e) if *fallback => {
                        tracing::warn!(checkpoint = %name, error = %e, "Checkpoint unreadable; trying an older one.");
                    }
                    Err(e) => return Err(e),
                }
            }
            let loaded = loaded.ok_or_else(|| {
                Error::Checkpoint(format!(
                    "none of the {} checkpoints in {place} can be restored",
                    candidates.len(),
                ))
            })?;
            (loaded, config.dir.clone())
        }
    };
    if loaded.max_parallelism != graph.config.max_parallelism {
        return Err(Error::Config(format!(
            "checkpoint {} was taken with max_parallelism {}, the job has {}: key groups cannot change",
            loaded.id, loaded.max_parallelism, graph.config.max_parallelism
        )));
    }
    tracing::info!(checkpoint = loaded.id, "Restoring from checkpoint.");
    Ok(Some(Restored { meta: loaded, root }))
}

fn thread_name(task: &str) -> String {
    // Linux shows 15 bytes of a thread name; keep the informative end.
    let name = format!("ff-{task}");
    name.chars().take(60).collect()
}

/// On SIGINT and SIGTERM, sets `flag` (a second signal exits at once).
pub(crate) fn register_signals(flag: &Arc<AtomicBool>) -> Result<Vec<signal_hook::SigId>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut ids = Vec::new();
    for sig in [SIGINT, SIGTERM] {
        // A second signal while stopping exits at once (code 130, as a shell would).
        let force = signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(flag))
            .map_err(|e| Error::io("registering a signal handler", e))?;
        let graceful = signal_hook::flag::register(sig, Arc::clone(flag))
            .map_err(|e| Error::io("registering a signal handler", e))?;
        ids.extend([force, graceful]);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::next_attempt;

    /// Runs started in one millisecond, from several threads at once, still get numbers
    /// of their own, each at least the start time.
    #[test]
    fn runs_started_at_once_get_distinct_numbers() {
        let start = u64::try_from(crate::now_millis()).unwrap_or(0);
        let threads: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..1000).map(|_| next_attempt()).collect::<Vec<_>>()))
            .collect();
        let mut all = Vec::new();
        for t in threads {
            let mine = t.join().expect("thread");
            assert!(
                mine.windows(2).all(|w| w[0] < w[1]),
                "increasing per thread"
            );
            all.extend(mine);
        }
        assert!(all.iter().all(|&a| a >= start));
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "every run has a number of its own");
    }
}
