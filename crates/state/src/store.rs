//! The per-worker registry of keyed state.

use crate::handle::{ListState, MapState, ReducingState, ValueState};
use crate::snapshot::{KeyedSnapshot, Section};
use crate::table::{
    Backing, ErasedTable, KvStore, ListTable, MapTable, NewTable, ReduceFn, ReducingTable,
    ValueTable,
};
use crate::{Error, Result, StateKey, StateValue, StoreScope};
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

/// Declares a state: its name, unique within an operator.
///
/// Built from a `&str` for the common case (`store.value_state::<u64>("count")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDescriptor {
    name: String,
}

impl StateDescriptor {
    /// A descriptor for the state called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }

    /// The state's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidConfig(
                "a state name must not be empty".into(),
            ));
        }
        Ok(())
    }
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
        }
    }

    /// An empty store whose tables are write-behind caches of `cache_capacity` entries
    /// each over `store`.
    #[cfg(any(feature = "rocksdb", test))]
    pub(crate) fn backed(
        scope: StoreScope,
        store: Arc<dyn KvStore>,
        cache_capacity: usize,
    ) -> Self {
        let mut s = Self::in_memory(scope);
        s.storage = Some((store, cache_capacity.max(1)));
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
        self.register::<ValueTable<K, V>>(desc.into())
            .map(ValueState::new)
    }

    /// Declares a map state: a map `UK -> V` per key `K`.
    pub fn map_state<K: StateKey, UK: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<MapState<UK, V>> {
        self.register::<MapTable<K, UK, V>>(desc.into())
            .map(MapState::new)
    }

    /// Declares a list state: a list of `V` per key `K`.
    pub fn list_state<K: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
    ) -> Result<ListState<V>> {
        self.register::<ListTable<K, V>>(desc.into())
            .map(ListState::new)
    }

    /// Declares a reducing (aggregating) state: one `V` per key `K`, where
    /// `ReducingState::add` folds each new value into the current one with `reduce`.
    /// Declaring it again replaces the function.
    pub fn reducing_state<K: StateKey, V: StateValue>(
        &mut self,
        desc: impl Into<StateDescriptor>,
        reduce: impl Fn(&V, V) -> V + Send + Sync + 'static,
    ) -> Result<ReducingState<V>> {
        let id = self.register::<ReducingTable<K, V>>(desc.into())?;
        let f: ReduceFn<V> = Arc::new(reduce);
        self.table::<ReducingTable<K, V>>(id)?.set_reduce(f);
        Ok(ReducingState::new(id))
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
        Ok(KeyedSnapshot { sections })
    }

    /// Loads a snapshot (or several: the snapshots of every worker of a previous run),
    /// keeping only the key groups this store owns. Each state's data is decoded when the
    /// state is declared; declarations made before the restore are filled at once.
    ///
    /// # Errors
    /// When a section's kind or type does not match the declared state.
    pub fn restore(&mut self, snapshot: KeyedSnapshot) -> Result<()> {
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
        self.tables
            .get_mut(id as usize)
            .and_then(|t| t.as_any_mut().downcast_mut::<T>())
            .ok_or(Error::HandleMismatch { id })
    }

    fn register<T: ErasedTable + NewTable + 'static>(
        &mut self,
        desc: StateDescriptor,
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
        let backing = match &self.storage {
            None => None,
            Some((store, capacity)) => Some(Backing {
                store: Arc::clone(store),
                state_id: u16::try_from(id)
                    .map_err(|_| Error::InvalidConfig("too many states in one operator".into()))?,
                max_parallelism: self.scope.max_parallelism,
                cache_capacity: *capacity,
            }),
        };
        self.tables.push(Box::new(T::new_table(backing)));
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
