//! Dimension rows in PostgreSQL or MySQL/MariaDB (feature `sql`): a lookup source for
//! the partial cache and a table source for the full cache.
//!
//! Rows become the user's type through serde: each row is read as a map of its column
//! names to values (integers, floats, booleans and text as they are; `NUMERIC` and
//! `DECIMAL` as strings with their exact digits, `12.50`), then deserialized. Columns of
//! other types (dates, times) are cast to text in a query of one's own.

mod row;

use ferroflow_core::{Error, Result};
use ferroflow_operators::lookup_join::{LookupKey, LookupSource, TableSource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Which server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Postgres,
    MySql,
}

enum Pool {
    Postgres(PgPool),
    MySql(MySqlPool),
}

/// Looks rows up by key in a table, many keys per query: `WHERE key = ANY($1)` on
/// PostgreSQL, `WHERE key IN (?, ?, ...)` on MySQL and MariaDB. A pool of connections is
/// opened on first use; a refused connection or a pool timeout is retryable, a bad
/// query or a row that does not decode is not.
pub struct SqlLookup<K, V> {
    url: String,
    dialect: Dialect,
    pool: OnceCell<Pool>,
    connections: u32,
    /// `SELECT ... WHERE key = ANY($1)` or `... IN ({keys})`.
    lookup_query: String,
    /// `SELECT ...` of the whole table, for the full cache.
    load_query: Option<String>,
    key_column: String,
    name: String,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> SqlLookup<K, V> {
    /// Rows of `table` (every column) by `key_column`, on the server at `url`
    /// (`postgres://root@127.0.0.1:5432/test`, `mysql://root@127.0.0.1:3306/test`).
    ///
    /// # Errors
    /// When the URL is of neither server, or a name is not a plain SQL identifier.
    pub fn table(url: &str, table: &str, key_column: &str) -> Result<Self> {
        for name in [table, key_column] {
            let plain = !name.is_empty()
                && name.split('.').all(|part| {
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
            if !plain {
                return Err(Error::Config(format!(
                    "sql lookup: `{name}` is not a table or column name"
                )));
            }
        }
        let dialect = dialect(url)?;
        let lookup_query = match dialect {
            Dialect::Postgres => format!("SELECT * FROM {table} WHERE {key_column} = ANY($1)"),
            Dialect::MySql => format!("SELECT * FROM {table} WHERE {key_column} IN ({{keys}})"),
        };
        Ok(Self::build(
            url,
            dialect,
            lookup_query,
            Some(format!("SELECT * FROM {table}")),
            key_column,
            table,
        ))
    }

    /// Rows from a query of one's own that returns `key_column` among its columns. On
    /// PostgreSQL it takes the keys as the array `$1` (`WHERE item_id = ANY($1)`); on
    /// MySQL and MariaDB it says where they go with `{keys}` (`WHERE item_id IN
    /// ({keys})`).
    ///
    /// # Errors
    /// When the URL is of neither server or the query has no place for the keys.
    pub fn query(url: &str, query: &str, key_column: &str) -> Result<Self> {
        let dialect = dialect(url)?;
        let place = match dialect {
            Dialect::Postgres => "$1",
            Dialect::MySql => "{keys}",
        };
        if !query.contains(place) {
            return Err(Error::Config(format!(
                "sql lookup: the query has no `{place}` for the keys: {query}"
            )));
        }
        Ok(Self::build(
            url,
            dialect,
            query.to_string(),
            None,
            key_column,
            "query",
        ))
    }

    /// The query that loads the whole table for the full cache (`table` sets it to
    /// `SELECT * FROM <table>`).
    #[must_use]
    pub fn with_load_query(mut self, query: impl Into<String>) -> Self {
        self.load_query = Some(query.into());
        self
    }

    /// Connections in the pool at most (default 4).
    #[must_use]
    pub fn with_connections(mut self, n: u32) -> Self {
        self.connections = n.max(1);
        self
    }

    fn build(
        url: &str,
        dialect: Dialect,
        lookup_query: String,
        load_query: Option<String>,
        key_column: &str,
        what: &str,
    ) -> Self {
        let server = match dialect {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        };
        Self {
            url: url.to_string(),
            dialect,
            pool: OnceCell::new(),
            connections: 4,
            lookup_query,
            load_query,
            key_column: key_column.to_string(),
            name: format!("{server}:{what}"),
            _types: PhantomData,
        }
    }

    async fn pool(&self) -> Result<&Pool> {
        self.pool
            .get_or_try_init(|| async {
                let timeout = Duration::from_secs(5);
                Ok(match self.dialect {
                    Dialect::Postgres => Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(self.connections)
                            .acquire_timeout(timeout)
                            .connect_lazy(&self.url)
                            .map_err(|e| self.error(e, "opening a pool"))?,
                    ),
                    Dialect::MySql => Pool::MySql(
                        MySqlPoolOptions::new()
                            .max_connections(self.connections)
                            .acquire_timeout(timeout)
                            .connect_lazy(&self.url)
                            .map_err(|e| self.error(e, "opening a pool"))?,
                    ),
                })
            })
            .await
    }

    /// A server error as the job sees it: retryable when the connection failed.
    fn error(&self, e: sqlx::Error, doing: &str) -> Error {
        let retryable = matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_)
        );
        Error::External {
            system: self.name.clone(),
            context: doing.to_string(),
            source: e.into(),
            retryable,
        }
    }

    /// Runs `sql` with `keys` bound; each row as a map of its columns.
    async fn rows(&self, sql: &str, keys: &[Value]) -> Result<Vec<serde_json::Map<String, Value>>> {
        let doing = || format!("running `{sql}`");
        match self.pool().await? {
            Pool::Postgres(pool) => {
                let mut query = sqlx::query(sql);
                if sql.contains("$1") {
                    query = if keys.iter().all(Value::is_i64) {
                        query.bind(keys.iter().filter_map(Value::as_i64).collect::<Vec<i64>>())
                    } else {
                        query.bind(keys.iter().map(key_text).collect::<Vec<String>>())
                    };
                }
                let rows = query
                    .fetch_all(pool)
                    .await
                    .map_err(|e| self.error(e, &doing()))?;
                rows.iter()
                    .map(|r| row::pg(r).map_err(|e| self.decode_error(e)))
                    .collect()
            }
            Pool::MySql(pool) => {
                let marks = vec!["?"; keys.len()].join(", ");
                let sql = sql.replace("{keys}", &marks);
                let mut query = sqlx::query(&sql);
                for key in keys {
                    query = match key.as_i64() {
                        Some(n) => query.bind(n),
                        None => query.bind(key_text(key)),
                    };
                }
                let rows = query
                    .fetch_all(pool)
                    .await
                    .map_err(|e| self.error(e, &doing()))?;
                rows.iter()
                    .map(|r| row::mysql(r).map_err(|e| self.decode_error(e)))
                    .collect()
            }
        }
    }

    fn decode_error(&self, why: String) -> Error {
        Error::External {
            system: self.name.clone(),
            context: "reading a row".into(),
            source: why.into(),
            retryable: false,
        }
    }
}

/// A key as text (strings without their quotes).
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn dialect(url: &str) -> Result<Dialect> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Dialect::Postgres)
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        Ok(Dialect::MySql)
    } else {
        Err(Error::Config(format!(
            "sql lookup: `{url}` is neither a postgres:// nor a mysql:// URL"
        )))
    }
}

impl<K: LookupKey, V: DeserializeOwned> SqlLookup<K, V> {
    /// A row as (key, value).
    fn decode(&self, row: serde_json::Map<String, Value>) -> Result<(K, V)> {
        let key = self.key(&row)?;
        let value = self.value(&key, row)?;
        Ok((key, value))
    }

    /// The key column of `row`.
    fn key(&self, row: &serde_json::Map<String, Value>) -> Result<K> {
        let key = row.get(&self.key_column).cloned().ok_or_else(|| {
            self.decode_error(format!("the rows have no column `{}`", self.key_column))
        })?;
        serde_json::from_value(key)
            .map_err(|e| self.decode_error(format!("column `{}`: {e}", self.key_column)))
    }

    /// `row` as the row type (the key only names it in errors).
    fn value(&self, key: &K, row: serde_json::Map<String, Value>) -> Result<V> {
        serde_json::from_value(Value::Object(row))
            .map_err(|e| self.decode_error(format!("the row of key {key:?}: {e}")))
    }
}

impl<K, V> LookupSource for SqlLookup<K, V>
where
    K: LookupKey,
    V: DeserializeOwned + Clone + Serialize + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;

    async fn lookup(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let bound: Vec<Value> = keys
            .iter()
            .map(|k| {
                serde_json::to_value(k).map_err(|e| self.decode_error(format!("key {k:?}: {e}")))
            })
            .collect::<Result<_>>()?;
        let rows = self.rows(&self.lookup_query, &bound).await?;
        let mut found: HashMap<K, V> = HashMap::with_capacity(rows.len());
        for row in rows {
            let (k, v) = self.decode(row)?;
            found.insert(k, v);
        }
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

impl<K, V> TableSource for SqlLookup<K, V>
where
    K: LookupKey,
    V: DeserializeOwned + Clone + Serialize + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;

    async fn load_all(&self) -> Result<Vec<(K, V)>> {
        self.load_where(&|_| true).await
    }

    /// Reads every row's key and decodes the rows of the share only.
    async fn load_where(&self, keep: &(dyn Fn(&K) -> bool + Send + Sync)) -> Result<Vec<(K, V)>> {
        let sql = self.load_query.as_deref().ok_or_else(|| {
            Error::Config(format!(
                "{}: a full cache needs the query that loads the whole table (with_load_query)",
                self.name
            ))
        })?;
        let mut kept = Vec::new();
        for row in self.rows(sql, &[]).await? {
            let key = self.key(&row)?;
            if keep(&key) {
                let value = self.value(&key, row)?;
                kept.push((key, value));
            }
        }
        Ok(kept)
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}
