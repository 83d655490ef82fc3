//! The per-worker registry of keyed state.

use crate::handle::{ListState, MapState, ReducingState, ValueState};
use crate::native::{NativeManifest, NativeState, NativeTarget, PendingSnapshot};
use crate::snapshot::{KeyedSnapshot, Section};
use crate::table::{
    Backing, ErasedTable, Expiring, KvStore, ListTable, MapTable, NewTable, ReduceFn,
    ReducingTable, Sweep, ValueTable,
};
use crate::ttl::{Stamped, TtlClock, TtlRegistry, TtlSpec, TtlTime};
use crate::{Error, Result, StateKey, StateTtl, StateValue, StoreScope};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The kind of a declared state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// One value per key.
    Value,
    /// A map per key.
    Map,
    /// A list per key.
    List,
    /// One value per key, folded with a reduce function on every `add`.
    Reducing,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateKind::Value => "value state",
            StateKind::Map => "map state",
            StateKind::List => "list state",
            StateKind::Reducing => "reducing state",
        })
    }
}

/// Declares a state: its name, unique within an operator, and optionally a time-to-live.
///
/// Built from a `&str` for the common case (`store.value_state::<u64>("count")`). Values
/// are stored with serde in postcard's compact binary encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDescriptor {
    name: String,
    ttl: Option<StateTtl>,
}

impl StateDescriptor {
    /// A descriptor for the state called `name`, without TTL.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ttl: None,
        }
    }

    /// Gives every value (map entry, list element) of the state a time-to-live.
    #[must_use]
    pub fn with_ttl(mut self, ttl: StateTtl) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state's TTL, if any.
    pub fn ttl(&self) -> Option<&StateTtl> {
        self.ttl.as_ref()
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidConfig(
                "a state name must not be empty".into(),
            ));
        }
        if let Some(ttl) = &self.ttl {
            ttl.validate()
                .map_err(|e| Error::InvalidConfig(format!("state `{}`: {e}", self.name)))?;
        }
        Ok(())
    }
}

/// When the next sweep of a TTL state is due.
#[derive(Debug)]
struct SweepSchedule {
    table: u32,
    time: TtlTime,
    every: i64,
    /// `None` until the clock is first seen.
    next: Option<i64>,
}

impl From<&str> for StateDescriptor {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for StateDescriptor {
    fn from(name: String) -> Self {
        Self::new(name)
    }
}

/// Size of one declared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableStats {
    /// The state's name.
    pub name: String,
    /// Its kind.
    pub kind: StateKind,
    /// Number of keys that hold state.
    pub keys: usize,
    /// Number of entries: values, map entries or list elements.
    pub entries: usize,
}

/// Size of all the state of one keyed store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateStats {
    /// One line per declared state, in declaration order.
    pub tables: Vec<TableStats>,
}

impl StateStats {
    /// Total entries over all states.
    pub fn entries(&self) -> usize {
        self.tables.iter().map(|t| t.entries).sum()
    }
}

/// The keyed state of one worker of one keyed operator.
///
/// States are declared by name and kind; declaring the same name again with the same kind
/// and types returns the same handle (so `open` may run more than once), while a different
/// kind or type is an error. Opened through a [`crate::StateBackend`].
pub struct KeyedStateStore {
    scope: StoreScope,
    tables: Vec<Box<dyn ErasedTable>>,
    names: HashMap<String, u32>,
    descriptors: Vec<StateDescriptor>,
    /// Restored sections not yet claimed by a declaration, by state name.
    pending: HashMap<String, Vec<Section>>,
    /// The store under backed tables, with each table's cache capacity; `None` keeps
    /// tables in memory.
    storage: Option<(Arc<dyn KvStore>, usize)>,
    /// Clocks and TTLs, shared with a RocksDB compaction filter.
    ttl: Arc<TtlRegistry>,
    sweeps: Vec<SweepSchedule>,
    /// The id of each declared table in stored keys (backed mode).
    state_ids: Vec<u16>,
    /// States found in a restored native snapshot, by name: their ids are kept.
    native_states: HashMap<String, NativeState>,
    next_state_id: u16,
}

impl fmt::Debug for KeyedStateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedStateStore")
            .field("scope", &self.scope)
            .field("states", &self.descriptors)
            .finish()
    }
}

impl KeyedStateStore {
    /// An empty store whose tables live on the heap.
    pub(crate) fn in_memory(scope: StoreScope) -> Self {
        Self {
            scope,
            tables: Vec::new(),
            names: HashMap::new(),
            descriptors: Vec::new(),
            pending: HashMap::new(),
            storage: None,
            ttl: Arc::new(TtlRegistry::default()),
            sweeps: Vec::new(),
            state_ids: Vec::new(),
            native_states: HashMap::new(),
            next_state_id: 0,
        }
    }

    /// Adopts the states of restored native snapshots: declarations of these names reuse
    /// their ids (and must match their kinds and types), new states get fresh ids.
    #[cfg(feature = "rocksdb")]
    pub(crate) fn adopt_native_states(&mut self, states: Vec<NativeState>) {
        for st in states {
            self.next_state_id = self.next_state_id.max(st.id.saturating_add(1));
            self.native_states.insert(st.name.clone(), st);
        }
    }

    /// Snapshots the store for a checkpoint: natively (files of the backing store, only
    /// new ones copied) when the store supports it and `target` is given, otherwise as
    /// sections in the canonical format (see [`Self::snapshot`]).
    pub fn snapshot_into(&mut self, target: Option<&NativeTarget>) -> Result<KeyedSnapshot> {
        self.snapshot_in_background(target)?.wait()
    }

    /// [`Self::snapshot_into`], with the native part finished in the background where
    /// the store can (RocksDB): the caches' changed entries are serialised on this
    /// thread, and their write into the store and the store's checkpoint happen on
    /// another. Until that is done every read or write that reaches the store waits for
    /// it; reads and writes that the caches serve do not. The snapshot is complete once
    /// [`PendingSnapshot::wait`] returns.
    pub fn snapshot_in_background(
        &mut self,
        target: Option<&NativeTarget>,
    ) -> Result<PendingSnapshot> {
        let (Some(target), Some((store, _))) = (target, &self.storage) else {
            return self.snapshot().map(PendingSnapshot::ready);
        };
        let store = Arc::clone(store);
        let pending = store.native_checkpoint_in_background(&mut || self.flush(), target)?;
        let Some(pending) = pending else {
            return self.snapshot().map(PendingSnapshot::ready);
        };
        let mut states: Vec<NativeState> = self
            .descriptors
            .iter()
            .zip(&self.tables)
            .zip(&self.state_ids)
            .map(|((d, t), id)| NativeState {
                name: d.name().to_string(),
                id: *id,
                kind: NativeState::kind_name(t.kind()).to_string(),
                type_name: t.type_name().to_string(),
            })
            .collect();
        // Restored states nobody declared are still in the store: keep naming them.
        for (name, st) in &self.native_states {
            if !self.names.contains_key(name) {
                states.push(st.clone());
            }
        }
        let range = self.scope.key_groups;
        let snapshot = KeyedSnapshot {
            sections: self.pending.values().flatten().cloned().collect(),
            native: vec![NativeManifest {
                backend: "rocksdb".into(),
                // Filled in when the background part is done.
                store_id: String::new(),
                max_parallelism: self.scope.max_parallelism,
                key_group_start: range.start(),
                key_group_end: range.end(),
                states,
                files: Vec::new(),
            }],
        };
        Ok(PendingSnapshot::new(snapshot, pending))
    }

    /// An empty store whose tables are write-behind caches of `cache_capacity` entries
    /// each over `store`.
    #[cfg(any(feature = "rocksdb", test))]
    pub(crate) fn backed(
        scope: StoreScope,
        store: Arc<dyn KvStore>,
        cache_capacity: usize,
        ttl: Arc<TtlRegistry>,
    ) -> Self {
        let mut s = Self::in_memory(scope);
        s.storage = Some((store, cache_capacity.max(1)));
        s.ttl = ttl;
        s
    }

    /// Writes every cached change to the backing store (no-op in memory).
    pub fn flush(&mut self) -> Result<()> {
        for t in &mut self.tables {
            t.flush()?;
        }
        Ok(())
    }

    /// Where this store belongs (operator, worker, key groups).
    pub fn scope(&self) -> &StoreScope {
        &self.scope
    }

    /// Declares a value state: one `V` per key `K`.
    pub fn value_state<K: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<ValueState<V>> {
        let desc = desc.into();
        match desc.ttl {
            None => self.register::<ValueTable<K, V>>(desc),
            Some(_) => self.register_ttl::<ValueTable<K, Stamped<V>>>(desc),
        }
        .map(|(id, ttl)| ValueState::new(id, ttl))
    }

    /// Declares a map state: a map `UK -> V` per key `K`.
    pub fn map_state<K: StateKey, UK: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<MapState<UK, V>> {
        let desc = desc.into();
        match desc.ttl {
            None => self.register::<MapTable<K, UK, V>>(desc),
            Some(_) => self.register_ttl::<MapTable<K, UK, Stamped<V>>>(desc),
        }
        .map(|(id, ttl)| MapState::new(id, ttl))
    }

    /// Declares a list state: a list of `V` per key `K`.
    pub fn list_state<K: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<ListState<V>> {
        let desc = desc.into();
        match desc.ttl {
            None => self.register::<ListTable<K, V>>(desc),
            Some(_) => self.register_ttl::<ListTable<K, Stamped<V>>>(desc),
        }
        .map(|(id, ttl)| ListState::new(id, ttl))
    }

    /// Declares a reducing (aggregating) state: one `V` per key `K`, where
    /// `ReducingState::add` folds each new value into the current one with `reduce`.
    /// Declaring it again replaces the function.
    pub fn reducing_state<K: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
        reduce: impl Fn(&V, V) -> V + Send + Sync + 'static,
    ) -> Result<ReducingState<V>> {
        let desc = desc.into();
        if desc.ttl.is_none() {
            let (id, _) = self.register::<ReducingTable<K, V>>(desc)?;
            let f: ReduceFn<V> = Arc::new(reduce);
            self.table::<ReducingTable<K, V>>(id)?.set_reduce(f);
            return Ok(ReducingState::new(id, None));
        }
        let (id, ttl) = self.register_ttl::<ReducingTable<K, Stamped<V>>>(desc)?;
        // The aggregate takes the stamp of the value folded in last.
        let f: ReduceFn<Stamped<V>> =
            Arc::new(move |current: &Stamped<V>, added: Stamped<V>| Stamped {
                at: added.at,
                value: reduce(&current.value, added.value),
            });
        self.table::<ReducingTable<K, Stamped<V>>>(id)?
            .set_reduce(f);
        Ok(ReducingState::new(id, ttl))
    }

    /// Sets the processing time TTLs are measured on (the runtime does this once per
    /// batch). Until it is first set, the wall clock is read on every access.
    pub fn set_processing_time(&self, now_millis: i64) {
        self.ttl.clock.set_processing_time(now_millis);
    }

    /// Advances the event time (watermark) TTLs are measured on. Watermarks never go back.
    pub fn advance_watermark(&self, watermark: i64) {
        self.ttl.clock.advance_watermark(watermark);
    }

    /// Whether any declared state has a TTL.
    pub fn has_ttl(&self) -> bool {
        self.ttl.has_any()
    }

    /// Sweeps every TTL state whose sweep interval has passed on its clock; returns how
    /// many expired entries were removed. Cheap when none is due.
    pub fn sweep_due(&mut self) -> Result<usize> {
        let mut removed = 0;
        for s in &mut self.sweeps {
            let now = self.ttl.clock.now(s.time);
            if now == i64::MIN {
                continue;
            }
            match s.next {
                Some(next) if now >= next => {
                    removed += self.tables[s.table as usize].sweep()?;
                    s.next = Some(now.saturating_add(s.every));
                }
                Some(_) => {}
                None => s.next = Some(now.saturating_add(s.every)),
            }
        }
        if removed > 0 {
            tracing::debug!(operator = %self.scope.operator, worker = self.scope.worker, removed, "Swept expired state.");
        }
        Ok(removed)
    }

    /// Sweeps every TTL state now, whatever its interval; returns how many expired
    /// entries were removed.
    pub fn sweep_expired(&mut self) -> Result<usize> {
        let mut removed = 0;
        for t in &mut self.tables {
            removed += t.sweep()?;
        }
        Ok(removed)
    }

    /// Approximate bytes of all state: the in-memory tables or caches, plus what the
    /// backing store takes on disk and in its write buffers.
    pub fn approximate_bytes(&self) -> Result<u64> {
        let tables: u64 = self.tables.iter().map(|t| t.approx_bytes()).sum();
        let stored = match &self.storage {
            Some((store, _)) => store.approximate_bytes()?,
            None => 0,
        };
        Ok(tables + stored)
    }

    /// Approximate entries of all state: keys in memory tables (a map state counts each
    /// of its entries), plus the backing store's estimate (RocksDB's
    /// `estimate-num-keys`). Cheap: no scan.
    pub fn approximate_entries(&self) -> Result<u64> {
        let tables: u64 = self.tables.iter().map(|t| t.memory_keys()).sum();
        let stored = match &self.storage {
            Some((store, _)) => store.approximate_keys()?,
            None => 0,
        };
        Ok(tables + stored)
    }

    /// Writes every cached change back and compacts the backing store, so that deleted
    /// and expired entries stop taking space (a no-op in memory).
    pub fn compact(&mut self) -> Result<()> {
        self.flush()?;
        match &self.storage {
            Some((store, _)) => store.compact(),
            None => Ok(()),
        }
    }

    /// Snapshots every declared state, one section per state and key group. Restored
    /// state that no declaration claimed is carried over unchanged, so it survives until
    /// an operator declares it again.
    pub fn snapshot(&mut self) -> Result<KeyedSnapshot> {
        let mut sections = Vec::new();
        for (desc, table) in self.descriptors.iter().zip(&mut self.tables) {
            table.snapshot(desc.name(), self.scope.max_parallelism, &mut sections)?;
        }
        sections.extend(self.pending.values().flatten().cloned());
        Ok(KeyedSnapshot {
            sections,
            native: Vec::new(),
        })
    }

    /// Loads a snapshot (or several: the snapshots of every worker of a previous run),
    /// keeping only the key groups this store owns. Each state's data is decoded when the
    /// state is declared; declarations made before the restore are filled at once.
    ///
    /// # Errors
    /// When a section's kind or type does not match the declared state.
    pub fn restore(&mut self, snapshot: KeyedSnapshot) -> Result<()> {
        if let Some(m) = snapshot.native.first() {
            return Err(Error::InvalidConfig(format!(
                "this state was checkpointed natively by the `{}` backend and can only be \
                 restored by it; savepoints use the canonical format and restore on any backend",
                m.backend
            )));
        }
        for section in snapshot.filter(self.scope.key_groups).sections {
            match self.names.get(&section.state) {
                Some(&id) => self.restore_section(id, &section)?,
                None => self
                    .pending
                    .entry(section.state.clone())
                    .or_default()
                    .push(section),
            }
        }
        Ok(())
    }

    /// Removes and returns restored sections of `state` not claimed by a declaration
    /// (runtime state such as timers, which is not a declared table).
    pub fn take_pending(&mut self, state: &str) -> Vec<Section> {
        self.pending.remove(state).unwrap_or_default()
    }

    /// Names of restored states that no operator has declared (yet).
    pub fn unclaimed_states(&self) -> Vec<String> {
        let mut v: Vec<String> = self.pending.keys().cloned().collect();
        v.sort();
        v
    }

    fn restore_section(&mut self, id: u32, section: &Section) -> Result<()> {
        let table = &mut self.tables[id as usize];
        if table.kind() != section.kind {
            return Err(Error::StateConflict {
                name: section.state.clone(),
                existing: format!("{} in the snapshot", section.kind),
                requested: format!("{} ({})", table.kind(), table.type_name()),
            });
        }
        if table.type_name() != section.type_name {
            return Err(Error::Codec(format!(
                "state `{}` was written as {} and is now declared as {}; \
                 state types cannot change across a restore",
                section.state,
                section.type_name,
                table.type_name()
            )));
        }
        table.restore(section)
    }

    /// Exact statistics per declared state. In a backed store this flushes and scans the
    /// store, so it is meant for tests and diagnostics, not for every record.
    pub fn stats(&mut self) -> Result<StateStats> {
        let mut tables = Vec::with_capacity(self.tables.len());
        for (d, t) in self.descriptors.iter().zip(&mut self.tables) {
            let (keys, entries) = t.stats()?;
            tables.push(TableStats {
                name: d.name().to_string(),
                kind: t.kind(),
                keys,
                entries,
            });
        }
        Ok(StateStats { tables })
    }

    /// The typed table behind handle `id`.
    pub(crate) fn table<T: ErasedTable + 'static>(&mut self, id: u32) -> Result<&mut T> {
        typed_table(&mut self.tables, id)
    }

    /// Every table, with the clock TTLs are measured on.
    pub(crate) fn tables_and_clock(&mut self) -> (&mut [Box<dyn ErasedTable>], &TtlClock) {
        (&mut self.tables, &self.ttl.clock)
    }

    /// The typed table behind handle `id`, with the clock its TTL is measured on.
    pub(crate) fn table_and_clock<T: ErasedTable + 'static>(
        &mut self,
        id: u32,
    ) -> Result<(&mut T, &TtlClock)> {
        Ok((typed_table(&mut self.tables, id)?, &self.ttl.clock))
    }

    fn register<T: ErasedTable + NewTable + 'static>(
        &mut self,
        desc: StateDescriptor,
    ) -> Result<(u32, Option<TtlSpec>)> {
        let id = self.declare::<T>(desc, |t| Box::new(t))?;
        Ok((id, None))
    }

    fn register_ttl<T: ErasedTable + NewTable + Sweep + 'static>(
        &mut self,
        desc: StateDescriptor,
    ) -> Result<(u32, Option<TtlSpec>)> {
        let Some(ttl) = desc.ttl else {
            return Err(Error::InvalidConfig(format!(
                "state `{}` has no TTL",
                desc.name
            )));
        };
        let spec = ttl.spec();
        let registry = Arc::clone(&self.ttl);
        let kind = T::new_table(None).kind();
        let name = desc.name.clone();
        let before = self.tables.len();
        let id = self.declare::<T>(desc, move |inner| {
            Box::new(Expiring {
                inner,
                spec,
                registry,
            })
        })?;
        if self.tables.len() == before {
            // Declared again: the TTL must not change under existing handles.
            if self.ttl.spec_of(self.state_ids[id as usize]) != Some(spec) {
                return Err(Error::InvalidConfig(format!(
                    "state `{name}` is declared again with another TTL"
                )));
            }
            return Ok((id, Some(spec)));
        }
        let state_id = self.state_ids[id as usize];
        self.ttl.register(state_id, spec, kind);
        if let Some(every) = ttl.sweep_every() {
            self.sweeps.push(SweepSchedule {
                table: id,
                time: ttl.time,
                every,
                next: None,
            });
        }
        Ok((id, Some(spec)))
    }

    /// The id a new table gets in stored keys: the restored one for a natively restored
    /// state (whose kind and type must match), a fresh one otherwise.
    fn state_id_for<T: ErasedTable + NewTable>(&mut self, name: &str) -> Result<u16> {
        if let Some(st) = self.native_states.get(name) {
            let probe = T::new_table(None);
            let kind = NativeState::kind_name(probe.kind());
            if st.kind != kind || st.type_name != probe.type_name() {
                return Err(Error::Codec(format!(
                    "state `{name}` was written as {} state of {} and is now declared as \
                     {kind} state of {}; state types cannot change across a restore",
                    st.kind,
                    st.type_name,
                    probe.type_name()
                )));
            }
            return Ok(st.id);
        }
        let id = self.next_state_id;
        self.next_state_id = id
            .checked_add(1)
            .ok_or_else(|| Error::InvalidConfig("too many states in one operator".into()))?;
        Ok(id)
    }

    /// Declares a table (or finds its earlier declaration); `wrap` boxes a new one.
    fn declare<T: ErasedTable + NewTable + 'static>(
        &mut self,
        desc: StateDescriptor,
        wrap: impl FnOnce(T) -> Box<dyn ErasedTable>,
    ) -> Result<u32> {
        desc.validate()?;
        if let Some(&id) = self.names.get(desc.name()) {
            let existing = &self.tables[id as usize];
            if existing.as_any().is::<T>() {
                return Ok(id);
            }
            let requested = T::new_table(None);
            return Err(Error::StateConflict {
                name: desc.name().to_string(),
                existing: format!("{} ({})", existing.kind(), existing.type_name()),
                requested: format!("{} ({})", requested.kind(), requested.type_name()),
            });
        }
        let id = u32::try_from(self.tables.len())
            .map_err(|_| Error::InvalidConfig("too many states in one operator".into()))?;
        let state_id = self.state_id_for::<T>(desc.name())?;
        let backing = match &self.storage {
            None => None,
            Some((store, capacity)) => Some(Backing {
                store: Arc::clone(store),
                state_id,
                max_parallelism: self.scope.max_parallelism,
                cache_capacity: *capacity,
            }),
        };
        self.tables.push(wrap(T::new_table(backing)));
        self.state_ids.push(state_id);
        self.names.insert(desc.name().to_string(), id);
        if let Some(sections) = self.pending.remove(desc.name()) {
            for section in &sections {
                self.restore_section(id, section)?;
            }
        }
        self.descriptors.push(desc);
        Ok(id)
    }
}

/// The table behind handle `id` in `tables`, as a `T`.
fn typed_table<T: ErasedTable + 'static>(
    tables: &mut [Box<dyn ErasedTable>],
    id: u32,
) -> Result<&mut T> {
    // A match, not `ok_or`: that would build (and drop) an error on every access.
    match tables
        .get_mut(id as usize)
        .and_then(|t| t.as_any_mut().downcast_mut::<T>())
    {
        Some(table) => Ok(table),
        None => Err(Error::HandleMismatch { id }),
    }
}
