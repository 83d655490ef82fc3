//! The checkpoint coordinator: triggers checkpoints, collects acknowledgements, publishes
//! completed checkpoints and prunes old ones.

use super::metadata::{
    checkpoint_number, collect_shared_files, dir_name, latest_checkpoints, CheckpointMetadata,
    OperatorState, SinkCommit, SplitPositionEntry, StateFile,
};
use super::{CheckpointConfig, Remote};
use crate::runtime::control::JobControl;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one task contributes to a checkpoint.
#[derive(Debug, Default)]
pub(crate) struct TaskSnapshot {
    pub(crate) checkpoint: u64,
    pub(crate) root: PathBuf,
    pub(crate) states: Vec<StateFile>,
    pub(crate) positions: Vec<SplitPositionEntry>,
    pub(crate) sinks: Vec<SinkCommit>,
    /// Snapshots of non-keyed operators.
    pub(crate) operators: Vec<OperatorState>,
    /// The checkpoint becomes a savepoint: state goes in the canonical format, self-
    /// contained and readable by every backend.
    pub(crate) savepoint: bool,
    /// State whose snapshot a background thread is finishing: each gives its state file
    /// when done. The task acknowledges once all of them are.
    pub(crate) deferred: Vec<DeferredState>,
}

type FinishState = Box<dyn FnOnce() -> crate::Result<StateFile> + Send>;

/// The rest of an operator's snapshot, run off the task's thread. (In a mutex only so
/// that a `TaskSnapshot` can be shared with upload tasks, which never touch it.)
pub(crate) struct DeferredState(parking_lot::Mutex<FinishState>);

impl DeferredState {
    pub(crate) fn new(finish: FinishState) -> Self {
        Self(parking_lot::Mutex::new(finish))
    }

    fn finish(self) -> crate::Result<StateFile> {
        (self.0.into_inner())()
    }
}

impl std::fmt::Debug for DeferredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeferredState")
    }
}

pub(crate) fn checkpoint_dir(root: &Path, id: u64) -> PathBuf {
    root.join(format!("chk-{id}"))
}

/// Answer to a savepoint request: the savepoint directory, or why it failed.
pub(crate) type SavepointReply = Sender<crate::Result<PathBuf>>;

pub(crate) enum ToCoordinator {
    Ack {
        task: usize,
        snapshot: TaskSnapshot,
    },
    /// Take a savepoint as soon as no checkpoint is in flight; with `stop`, sources end
    /// right after its barrier.
    Savepoint {
        stop: bool,
        reply: SavepointReply,
    },
    /// A task's files could not be stored: the checkpoint cannot complete.
    Failed {
        task: usize,
        checkpoint: u64,
        error: crate::Error,
    },
    /// A task ended. Sources report their final positions: they take part in later
    /// checkpoints with those.
    Finished {
        task: usize,
        positions: Option<Vec<SplitPositionEntry>>,
    },
}

/// Shared between the coordinator and every task.
pub(crate) struct CheckpointHub {
    pub(crate) config: CheckpointConfig,
    requested: AtomicU64,
    completed: AtomicU64,
    /// Sources end after emitting the barrier of this checkpoint (0: none).
    stop_after: AtomicU64,
    /// The checkpoint that is taken as a savepoint (0: none).
    savepoint: AtomicU64,
    /// Durable storage, when configured.
    remote: Option<Arc<Remote>>,
    tx: Sender<ToCoordinator>,
    /// Per task, the thread finishing its last deferred snapshot.
    finishing: parking_lot::Mutex<HashMap<usize, std::thread::JoinHandle<()>>>,
}

impl CheckpointHub {
    /// The newest checkpoint sources should start.
    pub(crate) fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// The newest completed checkpoint.
    pub(crate) fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    pub(crate) fn new_snapshot(&self, checkpoint: u64) -> TaskSnapshot {
        TaskSnapshot {
            checkpoint,
            root: self.config.dir.clone(),
            savepoint: self.savepoint.load(Ordering::Acquire) == checkpoint,
            ..TaskSnapshot::default()
        }
    }

    /// A finished source's part of `checkpoint`: its splits' final positions, no state.
    fn finished_source_snapshot(
        &self,
        checkpoint: u64,
        positions: &[SplitPositionEntry],
    ) -> TaskSnapshot {
        TaskSnapshot {
            positions: positions.to_vec(),
            ..self.new_snapshot(checkpoint)
        }
    }

    /// Acknowledges a task's part of a checkpoint. State snapshots still being written
    /// are finished first, and with storage the files are uploaded, both in the
    /// background: the task goes on at once.
    pub(crate) fn ack(self: &Arc<Self>, task: usize, mut snapshot: TaskSnapshot) {
        let deferred = std::mem::take(&mut snapshot.deferred);
        if deferred.is_empty() {
            return self.send_ack(task, snapshot);
        }
        // One task's acknowledgements stay in order.
        self.wait_finishing(task);
        let hub = Arc::clone(self);
        let checkpoint = snapshot.checkpoint;
        let spawned = std::thread::Builder::new()
            .name(format!("ferroflow-snapshot-{task}"))
            .spawn(move || {
                for d in deferred {
                    match d.finish() {
                        Ok(file) => snapshot.states.push(file),
                        Err(error) => return hub.fail(task, checkpoint, error),
                    }
                }
                hub.send_ack(task, snapshot);
            });
        match spawned {
            Ok(handle) => {
                self.finishing.lock().insert(task, handle);
            }
            Err(e) => self.fail(
                task,
                checkpoint,
                crate::Error::io("starting a snapshot thread", e),
            ),
        }
    }

    /// Tells the coordinator that the task's part of `checkpoint` could not be written.
    fn fail(&self, task: usize, checkpoint: u64, error: crate::Error) {
        let _ = self.tx.send(ToCoordinator::Failed {
            task,
            checkpoint,
            error,
        });
    }

    /// Waits until the task's last deferred snapshot is finished and acknowledged.
    fn wait_finishing(&self, task: usize) {
        let handle = self.finishing.lock().remove(&task);
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!(task, "A snapshot thread panicked.");
            }
        }
    }

    fn send_ack(&self, task: usize, snapshot: TaskSnapshot) {
        // The coordinator may be gone when the job is ending: nothing to acknowledge then.
        match &self.remote {
            Some(remote) if !snapshot.states.is_empty() => {
                let tx = self.tx.clone();
                let root = snapshot.root.clone();
                remote.upload_snapshot(task, root, snapshot, move |snapshot, stored| {
                    let _ = tx.send(match stored {
                        Ok(()) => ToCoordinator::Ack { task, snapshot },
                        Err(error) => ToCoordinator::Failed {
                            task,
                            checkpoint: snapshot.checkpoint,
                            error,
                        },
                    });
                });
            }
            _ => {
                let _ = self.tx.send(ToCoordinator::Ack { task, snapshot });
            }
        }
    }

    /// Reports that a task ended, after its acknowledgements (which uploads may delay).
    pub(crate) fn finished(&self, task: usize, positions: Option<Vec<SplitPositionEntry>>) {
        self.wait_finishing(task);
        let tx = self.tx.clone();
        let send = move || {
            let _ = tx.send(ToCoordinator::Finished { task, positions });
        };
        match &self.remote {
            Some(remote) => remote.after_uploads(task, send),
            None => send(),
        }
    }

    /// Whether sources must end after the barrier of checkpoint `id`.
    pub(crate) fn stops_after(&self, id: u64) -> bool {
        self.stop_after.load(Ordering::Acquire) == id
    }

    /// Asks for a savepoint; the answer arrives on the returned channel.
    pub(crate) fn request_savepoint(&self, stop: bool) -> Receiver<crate::Result<PathBuf>> {
        let (reply, rx) = crossbeam_channel::bounded(1);
        if let Err(e) = self.tx.send(ToCoordinator::Savepoint { stop, reply }) {
            if let ToCoordinator::Savepoint { reply, .. } = e.0 {
                let _ = reply.send(Err(crate::Error::Checkpoint(
                    "the job has ended; no savepoint".into(),
                )));
            }
        }
        rx
    }
}

struct Pending {
    id: u64,
    started: Instant,
    acks: Vec<Option<TaskSnapshot>>,
    savepoint: Option<SavepointReply>,
}

pub(crate) struct Coordinator {
    hub: Arc<CheckpointHub>,
    rx: Receiver<ToCoordinator>,
    control: Arc<JobControl>,
    done: Arc<AtomicBool>,
    tasks: usize,
    max_parallelism: u16,
    next_id: u64,
    finished_sources: Vec<Option<Vec<SplitPositionEntry>>>,
    finished_other: bool,
    /// Tasks that reported their end ([`CheckpointHub::finished`], sent after their
    /// acknowledgements).
    ended: Vec<bool>,
    savepoints: std::collections::VecDeque<(bool, SavepointReply)>,
    stats: Arc<super::stats::CheckpointStats>,
}

impl Coordinator {
    /// A coordinator for `tasks` tasks whose first checkpoint is numbered `next_id`.
    pub(crate) fn new(
        config: CheckpointConfig,
        tasks: usize,
        max_parallelism: u16,
        next_id: u64,
        control: Arc<JobControl>,
        remote: Option<Arc<Remote>>,
        stats: Arc<super::stats::CheckpointStats>,
    ) -> (Self, Arc<CheckpointHub>, Arc<AtomicBool>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hub = Arc::new(CheckpointHub {
            config,
            requested: AtomicU64::new(next_id.saturating_sub(1)),
            completed: AtomicU64::new(next_id.saturating_sub(1)),
            stop_after: AtomicU64::new(0),
            savepoint: AtomicU64::new(0),
            remote,
            tx,
            finishing: parking_lot::Mutex::new(HashMap::new()),
        });
        let done = Arc::new(AtomicBool::new(false));
        let c = Self {
            hub: Arc::clone(&hub),
            rx,
            control,
            done: Arc::clone(&done),
            tasks,
            max_parallelism,
            next_id,
            finished_sources: (0..tasks).map(|_| None).collect(),
            finished_other: false,
            ended: vec![false; tasks],
            savepoints: std::collections::VecDeque::new(),
            stats,
        };
        (c, hub, done)
    }

    pub(crate) fn run(mut self) {
        let config = self.hub.config.clone();
        let mut next_trigger = Instant::now() + config.interval;
        let mut pending: Option<Pending> = None;
        // Before the first trigger no task places files: clear what earlier runs left.
        self.collect_shared_files();
        while !self.done.load(Ordering::Acquire) && !self.control.is_cancelled() {
            match self.rx.recv_timeout(Duration::from_millis(10)) {
                Ok(msg) => self.handle(msg, &mut pending),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            match &mut pending {
                Some(p) if p.acks.iter().all(Option::is_some) => {
                    let started = p.started;
                    if let Some(p) = pending.take() {
                        self.complete(p);
                    }
                    next_trigger = (started + config.interval).max(now + config.min_pause);
                }
                Some(p) if now.duration_since(p.started) > config.timeout => {
                    tracing::warn!(
                        checkpoint = p.id,
                        timeout = ?config.timeout,
                        "Checkpoint timed out; abandoned."
                    );
                    if let Some(p) = pending.take() {
                        let why =
                            format!("checkpoint {} timed out after {:?}", p.id, config.timeout);
                        self.give_up(p, crate::Error::Checkpoint(why));
                    }
                    next_trigger = now + config.min_pause;
                }
                Some(_) => {}
                None if !self.savepoints.is_empty() => {
                    if let Some((stop, reply)) = self.savepoints.pop_front() {
                        if self.can_trigger() {
                            let mut p = self.trigger(now, stop, true);
                            p.savepoint = Some(reply);
                            pending = Some(p);
                        } else {
                            let _ = reply.send(Err(crate::Error::Checkpoint(
                                "the job is ending; no savepoint can be taken".into(),
                            )));
                        }
                    }
                }
                None if now >= next_trigger && self.can_trigger() => {
                    pending = Some(self.trigger(now, false, false));
                }
                None => {}
            }
        }
        self.await_last_acks(&config, &mut pending);
        if let Some(p) = pending {
            self.give_up(p, crate::Error::Cancelled);
        }
        if self.done.load(Ordering::Acquire) {
            // Every task has ended: files an abandoned checkpoint placed can go.
            self.collect_shared_files();
        }
        for (_, reply) in self.savepoints.drain(..) {
            let _ = reply.send(Err(crate::Error::Checkpoint(
                "the job ended before the savepoint".into(),
            )));
        }
    }

    /// After every task ended: takes in the acknowledgements still on their way and
    /// completes the pending checkpoint if they are all there. A task's acknowledgement
    /// is sent once its files are stored, which may be after its thread ended (a stop
    /// with a savepoint ends every task right after that barrier). Waits until every
    /// task reported its end (sent after its acknowledgements), at most until the
    /// checkpoint's timeout.
    fn await_last_acks(&mut self, config: &CheckpointConfig, pending: &mut Option<Pending>) {
        if !self.done.load(Ordering::Acquire) || self.control.is_cancelled() {
            return;
        }
        let Some(deadline) = pending.as_ref().map(|p| p.started + config.timeout) else {
            return;
        };
        loop {
            match pending.as_ref() {
                Some(p) if p.acks.iter().all(Option::is_some) => {
                    if let Some(p) = pending.take() {
                        self.complete(p);
                    }
                    return;
                }
                Some(_) => {}
                None => return,
            }
            if self.ended.iter().all(|e| *e) && self.rx.is_empty() {
                return;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            match self.rx.recv_timeout(left.min(Duration::from_millis(10))) {
                Ok(msg) => self.handle(msg, pending),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    fn can_trigger(&self) -> bool {
        !self.finished_other && !self.control.is_stopping()
    }

    fn trigger(&mut self, now: Instant, stop: bool, savepoint: bool) -> Pending {
        let id = self.next_id;
        if stop {
            self.hub.stop_after.store(id, Ordering::Release);
        }
        if savepoint {
            self.hub.savepoint.store(id, Ordering::Release);
        }
        self.next_id += 1;
        let mut acks: Vec<Option<TaskSnapshot>> = (0..self.tasks).map(|_| None).collect();
        for (task, positions) in self.finished_sources.iter().enumerate() {
            if let Some(positions) = positions {
                acks[task] = Some(self.hub.finished_source_snapshot(id, positions));
            }
        }
        let dir = checkpoint_dir(&self.hub.config.dir, id);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            // Tasks will fail to write there and the checkpoint times out; say why now.
            tracing::warn!(dir = %dir.display(), error = %e, "Cannot create the checkpoint directory.");
        }
        tracing::debug!(checkpoint = id, "Triggering checkpoint.");
        self.stats.triggered(id, savepoint);
        self.hub.requested.store(id, Ordering::Release);
        Pending {
            id,
            started: now,
            acks,
            savepoint: None,
        }
    }

    fn handle(&mut self, msg: ToCoordinator, pending: &mut Option<Pending>) {
        match msg {
            ToCoordinator::Ack { task, snapshot } => match pending {
                Some(p) if p.id == snapshot.checkpoint => {
                    if let Some(slot) = p.acks.get_mut(task) {
                        *slot = Some(snapshot);
                    }
                }
                _ => tracing::debug!(
                    checkpoint = snapshot.checkpoint,
                    task,
                    "Late acknowledgement ignored."
                ),
            },
            ToCoordinator::Savepoint { stop, reply } => self.savepoints.push_back((stop, reply)),
            ToCoordinator::Failed {
                task,
                checkpoint,
                error,
            } => {
                tracing::warn!(checkpoint, task, error = %error, "A task's checkpoint files could not be stored; checkpoint abandoned.");
                match pending.take() {
                    Some(p) if p.id == checkpoint => self.give_up(p, error),
                    other => *pending = other,
                }
            }
            ToCoordinator::Finished { task, positions } => {
                if let Some(e) = self.ended.get_mut(task) {
                    *e = true;
                }
                match positions {
                    Some(positions) => self.source_finished(task, positions, pending),
                    None => self.other_finished(task, pending),
                }
            }
        }
    }

    /// A source task ended with its splits' final positions: they stand in for its
    /// acknowledgement of the pending checkpoint and of every later one.
    fn source_finished(
        &mut self,
        task: usize,
        positions: Vec<SplitPositionEntry>,
        pending: &mut Option<Pending>,
    ) {
        if let Some(p) = pending {
            if p.acks.get(task).is_some_and(Option::is_none) {
                p.acks[task] = Some(self.hub.finished_source_snapshot(p.id, &positions));
            }
        }
        if let Some(slot) = self.finished_sources.get_mut(task) {
            *slot = Some(positions);
        }
    }

    /// A stateful task ended: later checkpoints could not include its state, and a
    /// pending one it has not acknowledged is given up.
    fn other_finished(&mut self, task: usize, pending: &mut Option<Pending>) {
        tracing::debug!(task, "A non-source task finished; no further checkpoints.");
        self.finished_other = true;
        if let Some(p) = pending.take() {
            if p.acks.get(task).is_some_and(Option::is_none) {
                let why = "a task finished before the barrier reached it";
                self.give_up(p, crate::Error::Checkpoint(why.into()));
            } else {
                *pending = Some(p);
            }
        }
    }

    fn complete(&mut self, p: Pending) {
        if let Some(twice) = repeated_split(&p) {
            let why = format!(
                "two splits of source `{}` report a position under the id `{}`: a \
                 replayable split must return an id unique within its source from \
                 `SplitReader::split_id`",
                twice.operator, twice.split
            );
            tracing::error!(checkpoint = p.id, "{why}");
            self.give_up(p, crate::Error::Checkpoint(why));
            return;
        }
        let mut meta = CheckpointMetadata::new(p.id, self.max_parallelism);
        for snap in p.acks.into_iter().flatten() {
            meta.state_files.extend(snap.states);
            meta.positions.extend(snap.positions);
            meta.sink_commits.extend(snap.sinks);
            meta.operator_states.extend(snap.operators);
        }
        let root = &self.hub.config.dir;
        let mut dir = checkpoint_dir(root, p.id);
        if p.savepoint.is_some() {
            // A savepoint lives outside the retained checkpoints until deleted by hand.
            let name = format!("savepoint-{}", p.id);
            let from = format!("chk-{}/", p.id);
            for f in &mut meta.state_files {
                if let Some(rest) = f.file.strip_prefix(&from) {
                    f.file = format!("{name}/{rest}");
                }
            }
            let target = root.join(&name);
            if let Err(e) =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&dir, &target))
            {
                tracing::warn!(error = %e, "Could not move the savepoint into place.");
            }
            dir = target;
        }
        let written = std::fs::create_dir_all(&dir)
            .map_err(|e| crate::Error::io(format!("creating {}", dir.display()), e))
            .and_then(|()| meta.write(&dir))
            .and_then(|()| self.store_metadata(p.id, &dir));
        if let Some(reply) = p.savepoint {
            let _ = reply.send(match &written {
                Ok(()) => Ok(dir.clone()),
                Err(e) => Err(crate::Error::Checkpoint(format!(
                    "savepoint {} failed: {e}",
                    dir.display()
                ))),
            });
        }
        match written {
            Ok(()) => {
                self.hub.completed.store(p.id, Ordering::Release);
                let bytes = meta.state_files.iter().map(|f| f.bytes).sum();
                self.stats.completed(p.id, p.started.elapsed(), bytes, &dir);
                tracing::info!(
                    checkpoint = p.id,
                    duration_ms = p.started.elapsed().as_millis() as u64,
                    state_files = meta.state_files.len(),
                    "Checkpoint completed."
                );
                self.prune(p.id);
            }
            Err(e) => {
                tracing::warn!(checkpoint = p.id, error = %e, "Checkpoint could not be published; abandoned.");
                self.stats.failed(p.id, &e, true);
                self.abandon(p.id);
            }
        }
    }

    /// With storage: moves a savepoint's files to its name there, then stores `_metadata`,
    /// which completes the checkpoint. A failure removes the local copy too.
    fn store_metadata(&self, id: u64, dir: &Path) -> crate::Result<()> {
        let Some(remote) = &self.hub.remote else {
            return Ok(());
        };
        let name = dir_name(dir);
        let stored = (|| {
            if name != format!("chk-{id}") {
                remote.rename_dir(&format!("chk-{id}"), &name)?;
            }
            let bytes = std::fs::read(dir.join(super::metadata::METADATA))
                .map_err(|e| crate::Error::io(format!("reading {}", dir.display()), e))?;
            remote.put_bytes(&format!("{name}/{}", super::metadata::METADATA), bytes)
        })();
        if stored.is_err() {
            if let Err(e) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "Could not remove a checkpoint that was not stored.");
            }
        }
        stored
    }

    /// Deletes shared files no checkpoint uses, locally and in storage.
    fn collect_shared_files(&self) {
        collect_shared_files(&self.hub.config.dir);
        if let Some(remote) = &self.hub.remote {
            remote.collect_shared_files();
        }
    }

    /// Abandons a checkpoint in flight and answers its savepoint request, if any, with `why`.
    fn give_up(&self, p: Pending, why: crate::Error) {
        self.stats
            .failed(p.id, &why, !matches!(why, crate::Error::Cancelled));
        self.abandon(p.id);
        if let Some(reply) = p.savepoint {
            let _ = reply.send(Err(why));
        }
    }

    /// Removes an incomplete checkpoint's files.
    fn abandon(&self, id: u64) {
        let dir = checkpoint_dir(&self.hub.config.dir, id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "Could not remove an abandoned checkpoint.");
            }
        }
        if let Some(remote) = &self.hub.remote {
            // Uploads still running may add files later; pruning removes those.
            if let Err(e) = remote.delete_dir(&format!("chk-{id}")) {
                tracing::warn!(checkpoint = id, error = %e, "Could not remove an abandoned checkpoint from storage.");
            }
        }
    }

    /// Keeps the newest `retained` complete checkpoints and removes older directories,
    /// complete or not.
    fn prune(&self, newest: u64) {
        let root = &self.hub.config.dir;
        let complete = match latest_checkpoints(root) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Could not list checkpoints for pruning.");
                return;
            }
        };
        let keep_from = complete
            .iter()
            .take(self.hub.config.retained)
            .map(|(n, _)| *n)
            .min()
            .unwrap_or(newest);
        let Ok(entries) = std::fs::read_dir(root) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(n) = checkpoint_number(&name) else {
                continue;
            };
            if n < keep_from {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "Could not remove an old checkpoint.");
                }
            }
        }
        if let Some(remote) = &self.hub.remote {
            remote.prune(self.hub.config.retained);
        }
        // No checkpoint is in flight now, so no task is placing shared files.
        self.collect_shared_files();
    }
}

/// The first free checkpoint number under `root` (one past every `chk-<n>` present,
/// complete or not), so a restarted job never overwrites an earlier attempt's files.
pub(crate) fn next_checkpoint_id(root: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 1;
    };
    entries
        .flatten()
        .filter_map(|e| checkpoint_number(&e.file_name().to_string_lossy()))
        .max()
        .map_or(1, |n| n + 1)
}

/// A split position whose (source, split id) another task or split reported too.
fn repeated_split(p: &Pending) -> Option<&SplitPositionEntry> {
    let mut seen = std::collections::HashSet::new();
    p.acks
        .iter()
        .flatten()
        .flat_map(|snap| &snap.positions)
        .find(|e| !seen.insert((&e.operator, &e.split)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A stop with a savepoint ends every task right after the savepoint's barrier; with
    /// storage, a task's acknowledgement is sent once its files are uploaded, which can
    /// be after all the tasks ended. The savepoint still completes.
    #[test]
    fn a_savepoint_acknowledged_after_every_task_ended_completes() {
        let dir = tempfile::tempdir().unwrap();
        let config = CheckpointConfig::new(dir.path()).with_interval(Duration::from_secs(3600));
        let (coordinator, hub, done) = Coordinator::new(
            config,
            1,
            128,
            1,
            Arc::new(JobControl::default()),
            None,
            Arc::default(),
        );
        let thread = std::thread::spawn(move || coordinator.run());
        let reply = hub.request_savepoint(true);
        let asked = Instant::now();
        while hub.requested() < 1 {
            assert!(asked.elapsed() < Duration::from_secs(10), "no barrier");
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every task has ended; its acknowledgement and its end arrive afterwards.
        done.store(true, Ordering::Release);
        std::thread::sleep(Duration::from_millis(100));
        hub.ack(0, hub.new_snapshot(1));
        hub.finished(0, None);
        let path = reply
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert!(path.join("_metadata").is_file(), "{}", path.display());
        thread.join().unwrap();
    }
}
