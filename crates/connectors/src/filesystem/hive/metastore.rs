//! The Hive metastore partition-commit policy, over the `hive_metastore` crate's Thrift
//! client (Hive's `ThriftHiveMetastore` service, buffered binary transport, as Hive 2
//! and 3 serve it by default).

use super::HiveTable;
use crate::filesystem::commit::{CommittedPartition, PartitionCommitPolicy};
use ferroflow_core::{Error, Result};
use hive_metastore::{
    Database, FieldSchema, Partition, SerDeInfo, StorageDescriptor, Table,
    ThriftHiveMetastoreAddPartitionException as AddPartitionError, ThriftHiveMetastoreClient,
    ThriftHiveMetastoreClientBuilder,
    ThriftHiveMetastoreCreateDatabaseException as CreateDatabaseError,
    ThriftHiveMetastoreCreateTableException as CreateTableError,
    ThriftHiveMetastoreGetPartitionException as GetPartitionError,
};
use pilota::{AHashMap, FastStr};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::net::ToSocketAddrs;
use std::time::Duration;
use volo_thrift::MaybeException;

const SYSTEM: &str = "hive metastore";

/// Where the metastore is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HiveMetastoreConfig {
    /// `thrift://host:port` (Hive's `hive.metastore.uris`; port 9083 by default).
    pub uri: String,
    /// Longest wait for one call (default `30s`).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries of a call that failed on the connection or timed out (default 3), 1 s
    /// apart; a call the metastore refused is not tried again.
    pub attempts: u32,
}

impl Default for HiveMetastoreConfig {
    fn default() -> Self {
        Self {
            uri: "thrift://127.0.0.1:9083".into(),
            timeout: Duration::from_secs(30),
            attempts: 3,
        }
    }
}

/// A partition as the metastore holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HivePartition {
    /// Its values, in partition-key order (`["2026-12-05", "1405"]`).
    pub values: Vec<String>,
    /// Its location.
    pub location: String,
    /// Its storage's input format class.
    pub input_format: String,
}

/// Registers each committed partition in a Hive metastore table (`ADD PARTITION` with the
/// table's storage and the partition's location; a partition already there with another
/// location is moved). Idempotent: committing a partition again (late data, a restore)
/// changes nothing. [`HiveMetastorePolicy::create_table`] creates the table (and its
/// database) when missing.
pub struct HiveMetastorePolicy {
    config: HiveMetastoreConfig,
    database: FastStr,
    table: FastStr,
    client: ThriftHiveMetastoreClient,
    runtime: tokio::runtime::Runtime,
    /// The table's storage and partition keys, read on the first commit.
    schema: parking_lot::Mutex<Option<(StorageDescriptor, Vec<String>)>>,
}

impl std::fmt::Debug for HiveMetastorePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiveMetastorePolicy")
            .field("uri", &self.config.uri)
            .field("table", &format!("{}.{}", self.database, self.table))
            .finish_non_exhaustive()
    }
}

fn exception(context: String, e: impl std::fmt::Debug) -> Error {
    Error::external(SYSTEM, context, format!("{e:?}"), false)
}

impl HiveMetastorePolicy {
    /// A policy adding partitions to `table` (`db.table` or `table` in `default`) of the
    /// metastore at `config.uri`. Connects on the first call.
    ///
    /// # Errors
    /// [`Error::Config`] for a URI that is not `thrift://host:port` or does not resolve.
    pub fn new(config: HiveMetastoreConfig, table: &str) -> Result<Self> {
        let authority = config
            .uri
            .strip_prefix("thrift://")
            .ok_or_else(|| {
                Error::Config(format!(
                    "hive metastore uri `{}` must be thrift://host:port",
                    config.uri
                ))
            })?
            .trim_end_matches('/');
        let address = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| {
                Error::Config(format!(
                    "hive metastore uri `{}`: `{authority}` does not resolve to an address",
                    config.uri
                ))
            })?;
        let (database, table) = table.split_once('.').unwrap_or(("default", table));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferroflow-hive")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("hive metastore runtime: {e}")))?;
        let client = {
            let _inside = runtime.enter();
            ThriftHiveMetastoreClientBuilder::new("ferroflow")
                .address(address)
                .make_codec(volo_thrift::codec::default::DefaultMakeCodec::buffered())
                .build()
        };
        Ok(Self {
            config,
            database: FastStr::new(database),
            table: FastStr::new(table),
            client,
            runtime,
            schema: parking_lot::Mutex::new(None),
        })
    }

    /// Runs one call with the timeout, trying again after connection failures.
    fn call<T, E, F, Fut>(&self, what: &str, call: F) -> Result<MaybeException<T, E>>
    where
        T: Send,
        E: Send,
        F: Fn(ThriftHiveMetastoreClient) -> Fut + Send + Sync,
        Fut: Future<Output = std::result::Result<MaybeException<T, E>, volo_thrift::ClientError>>
            + Send,
    {
        let context = format!(
            "{what} on {}.{} at {}",
            self.database, self.table, self.config.uri
        );
        let attempts = self.config.attempts.max(1);
        let work = async {
            let mut last = None;
            for attempt in 1..=attempts {
                if attempt > 1 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                match tokio::time::timeout(self.config.timeout, call(self.client.clone())).await {
                    Ok(Ok(answer)) => return Ok(answer),
                    // A broken connection may heal; anything else the metastore said
                    // will be said again.
                    Ok(Err(e @ volo_thrift::ClientError::Transport(_))) => {
                        tracing::warn!(%context, attempt, error = %e, "hive metastore call failed");
                        last = Some(e.to_string());
                    }
                    Ok(Err(e)) => {
                        return Err(Error::external(
                            SYSTEM,
                            context.clone(),
                            e.to_string(),
                            false,
                        ))
                    }
                    Err(_) => last = Some(format!("no answer within {:?}", self.config.timeout)),
                }
            }
            Err(Error::external(
                SYSTEM,
                context.clone(),
                last.unwrap_or_default(),
                true,
            ))
        };
        ferroflow_core::storage::block_on(&self.runtime, work)
            .map_err(|_| Error::Internal(format!("{context}: the call panicked")))?
    }

    /// Creates the table `spec` describes (external, with its storage and partition
    /// keys), and its database, unless they exist. Returns whether it created the table.
    ///
    /// # Errors
    /// The metastore refused the table or could not be reached.
    pub fn create_table(&self, spec: &HiveTable) -> Result<bool> {
        let database = Database {
            name: Some(FastStr::new(&spec.database)),
            ..Database::default()
        };
        match self.call("create database", |c| {
            let database = database.clone();
            async move { c.create_database(database).await }
        })? {
            MaybeException::Ok(()) | MaybeException::Exception(CreateDatabaseError::O1(_)) => {}
            MaybeException::Exception(e) => {
                return Err(exception(format!("creating database {}", spec.database), e))
            }
        }
        let storage = spec.storage();
        let field = |(name, ty): (&str, &str)| FieldSchema {
            name: Some(FastStr::new(name)),
            r#type: Some(FastStr::new(ty)),
            comment: None,
        };
        let mut parameters = AHashMap::default();
        parameters.insert(FastStr::new("EXTERNAL"), FastStr::new("TRUE"));
        for (k, v) in spec.properties() {
            parameters.insert(FastStr::new(k), FastStr::new(v));
        }
        let mut serde_parameters = AHashMap::default();
        serde_parameters.insert(FastStr::new("serialization.format"), FastStr::new("1"));
        let table = Table {
            table_name: Some(FastStr::new(&spec.name)),
            db_name: Some(FastStr::new(&spec.database)),
            owner: Some(FastStr::new("ferroflow")),
            create_time: Some(now_secs()),
            sd: Some(StorageDescriptor {
                cols: Some(spec.columns.iter().map(|(n, t)| field((n, t))).collect()),
                location: Some(FastStr::new(&spec.location)),
                input_format: Some(FastStr::new(storage.input)),
                output_format: Some(FastStr::new(storage.output)),
                compressed: Some(false),
                num_buckets: Some(-1),
                serde_info: Some(SerDeInfo {
                    name: None,
                    serialization_lib: Some(FastStr::new(storage.serde)),
                    parameters: Some(serde_parameters),
                }),
                bucket_cols: Some(Vec::new()),
                sort_cols: Some(Vec::new()),
                parameters: Some(AHashMap::default()),
                ..StorageDescriptor::default()
            }),
            partition_keys: Some(
                spec.partition_keys
                    .iter()
                    .map(|k| field((k, "string")))
                    .collect(),
            ),
            parameters: Some(parameters),
            table_type: Some(FastStr::new("EXTERNAL_TABLE")),
            ..Table::default()
        };
        match self.call("create table", |c| {
            let table = table.clone();
            async move { c.create_table(table).await }
        })? {
            MaybeException::Ok(()) => Ok(true),
            MaybeException::Exception(CreateTableError::O1(_)) => Ok(false),
            MaybeException::Exception(e) => Err(exception(
                format!("creating table {}.{}", spec.database, spec.name),
                e,
            )),
        }
    }

    /// The table's storage and partition keys (read once).
    fn table(&self) -> Result<(StorageDescriptor, Vec<String>)> {
        if let Some(known) = self.schema.lock().clone() {
            return Ok(known);
        }
        let (db, tbl) = (self.database.clone(), self.table.clone());
        let table = match self.call("get table", |c| {
            let (db, tbl) = (db.clone(), tbl.clone());
            async move { c.get_table(db, tbl).await }
        })? {
            MaybeException::Ok(table) => table,
            MaybeException::Exception(e) => {
                return Err(exception(format!("reading table {db}.{tbl}"), e))
            }
        };
        let keys = table
            .partition_keys
            .unwrap_or_default()
            .into_iter()
            .filter_map(|k| k.name.map(|n| n.to_string()))
            .collect();
        let known = (table.sd.unwrap_or_default(), keys);
        *self.schema.lock() = Some(known.clone());
        Ok(known)
    }

    /// The table's partitions (at most 32767).
    ///
    /// # Errors
    /// The metastore refused the call or could not be reached.
    pub fn partitions(&self) -> Result<Vec<HivePartition>> {
        let (db, tbl) = (self.database.clone(), self.table.clone());
        match self.call("list partitions", |c| {
            let (db, tbl) = (db.clone(), tbl.clone());
            async move { c.get_partitions(db, tbl, -1).await }
        })? {
            MaybeException::Ok(parts) => Ok(parts
                .into_iter()
                .map(|p| {
                    let sd = p.sd.unwrap_or_default();
                    HivePartition {
                        values: p
                            .values
                            .unwrap_or_default()
                            .iter()
                            .map(|v| v.to_string())
                            .collect(),
                        location: sd.location.map(|l| l.to_string()).unwrap_or_default(),
                        input_format: sd.input_format.map(|l| l.to_string()).unwrap_or_default(),
                    }
                })
                .collect()),
            MaybeException::Exception(e) => {
                Err(exception(format!("listing partitions of {db}.{tbl}"), e))
            }
        }
    }
}

/// Whether two locations name the same directory: Hive stores `file:///x` as `file:/x`.
fn same_location(a: &str, b: &str) -> bool {
    let norm = |l: &str| {
        let l = l.trim_end_matches('/');
        match l.strip_prefix("file://") {
            Some(rest) if rest.starts_with('/') => format!("file:{rest}"),
            _ => l.to_string(),
        }
    };
    norm(a) == norm(b)
}

fn now_secs() -> i32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
}

impl PartitionCommitPolicy for HiveMetastorePolicy {
    fn commit(&self, partition: &CommittedPartition) -> Result<()> {
        let (sd, keys) = self.table()?;
        let pairs = partition.values();
        let names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
        if names != keys {
            return Err(Error::Config(format!(
                "partition `{}` has the keys {names:?}, the table {}.{} {keys:?}",
                partition.path, self.database, self.table
            )));
        }
        let values: Vec<FastStr> = pairs.iter().map(|(_, v)| FastStr::new(v)).collect();
        let location = FastStr::new(&partition.url);
        let (db, tbl) = (self.database.clone(), self.table.clone());
        let existing = match self.call("get partition", |c| {
            let (db, tbl, values) = (db.clone(), tbl.clone(), values.clone());
            async move { c.get_partition(db, tbl, values).await }
        })? {
            MaybeException::Ok(p) => Some(p),
            MaybeException::Exception(GetPartitionError::O2(_)) => None,
            MaybeException::Exception(e) => {
                return Err(exception(
                    format!("reading partition {}", partition.path),
                    e,
                ))
            }
        };
        match existing {
            Some(p)
                if p.sd
                    .as_ref()
                    .and_then(|sd| sd.location.as_ref())
                    .is_some_and(|l| same_location(l, &location)) =>
            {
                Ok(())
            }
            Some(mut p) => {
                let mut moved = p.sd.take().unwrap_or_else(|| sd.clone());
                moved.location = Some(location);
                p.sd = Some(moved);
                match self.call("alter partition", |c| {
                    let (db, tbl, p) = (db.clone(), tbl.clone(), p.clone());
                    async move { c.alter_partition(db, tbl, p).await }
                })? {
                    MaybeException::Ok(()) => Ok(()),
                    MaybeException::Exception(e) => {
                        Err(exception(format!("moving partition {}", partition.path), e))
                    }
                }
            }
            None => {
                let new = Partition {
                    values: Some(values),
                    db_name: Some(db.clone()),
                    table_name: Some(tbl.clone()),
                    create_time: Some(now_secs()),
                    last_access_time: Some(0),
                    sd: Some(StorageDescriptor {
                        location: Some(location),
                        ..sd
                    }),
                    parameters: Some(AHashMap::default()),
                    ..Partition::default()
                };
                match self.call("add partition", |c| {
                    let new = new.clone();
                    async move { c.add_partition(new).await }
                })? {
                    // Another worker or an earlier attempt added it.
                    MaybeException::Ok(_) | MaybeException::Exception(AddPartitionError::O2(_)) => {
                        tracing::info!(partition = %partition.path, table = %format!("{db}.{tbl}"), "hive metastore: added a partition");
                        Ok(())
                    }
                    MaybeException::Exception(e) => {
                        Err(exception(format!("adding partition {}", partition.path), e))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hive_spells_local_locations_its_own_way() {
        assert!(super::same_location("file:/t/dt=1", "file:///t/dt=1/"));
        assert!(super::same_location("hdfs://nn:9000/t", "hdfs://nn:9000/t"));
        assert!(!super::same_location("file:/t/dt=1", "file:///t/dt=2"));
    }
}
