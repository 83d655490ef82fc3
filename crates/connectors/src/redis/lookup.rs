//! Dimension rows in Redis: a JSON string or a hash per key.

use super::{redis_error, RedisConnection};
use ferroflow_core::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::marker::PhantomData;

/// How a row is stored under its key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisRow {
    /// A string holding the row as JSON (`SET dim:item:7 '{"brand":"acme"}'`), read with
    /// `MGET`. Default.
    #[default]
    Json,
    /// A hash whose fields are the row's fields (`HSET dim:item:7 brand acme`), read with
    /// pipelined `HGETALL`. Every value in a hash is text: a field of the row that is a
    /// number or a boolean is parsed from it, a string field (an exact decimal, say)
    /// keeps it as it is.
    Hash,
}

/// Looks rows up in Redis, many keys per round trip: `MGET` for JSON strings, pipelined
/// `HGETALL` for hashes. The key of item `7` under the template `dim:item:{}` is
/// `dim:item:7`. A missing key (or an empty hash) is no row. The connection reconnects
/// by itself; a refused connection or a timeout is a retryable error (the join retries
/// with backoff), a row that does not decode is not.
pub struct RedisLookup<K, V> {
    conn: RedisConnection,
    template: String,
    /// Where the template's first `{}` is.
    at: usize,
    row: RedisRow,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> RedisLookup<K, V> {
    /// Rows of the server at `url` (`redis://127.0.0.1:6379/0`) under keys made from
    /// `template` (`{}` stands for the join key).
    ///
    /// # Errors
    /// When `url` is not a Redis URL or `template` has no `{}`.
    pub fn new(url: &str, template: impl Into<String>, row: RedisRow) -> Result<Self> {
        let template = template.into();
        let Some(at) = template.find("{}") else {
            return Err(Error::Config(format!(
                "redis lookup: the key template `{template}` has no `{{}}` for the key"
            )));
        };
        Ok(Self {
            conn: RedisConnection::new(url)?,
            template,
            at,
            row,
            _types: PhantomData,
        })
    }

    fn key_of(&self, key: &impl Display) -> String {
        let (before, after) = (&self.template[..self.at], &self.template[self.at + 2..]);
        format!("{before}{key}{after}")
    }
}

impl<K, V> ferroflow_operators::lookup_join::LookupSource for RedisLookup<K, V>
where
    K: ferroflow_operators::lookup_join::LookupKey + Display,
    V: DeserializeOwned + Clone + Serialize + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;

    async fn lookup(&self, keys: &[K]) -> Result<Vec<Option<V>>> {
        let names: Vec<String> = keys.iter().map(|k| self.key_of(k)).collect();
        let mut conn = self.conn.get().await?;
        let context = || format!("looking up {} keys such as `{}`", names.len(), names[0]);
        match self.row {
            RedisRow::Json => {
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(&names)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error(e, context()))?;
                values
                    .into_iter()
                    .zip(&names)
                    .map(|(v, name)| {
                        v.map(|text| serde_json::from_str(&text).map_err(|e| decode_error(name, e)))
                            .transpose()
                    })
                    .collect()
            }
            RedisRow::Hash => {
                let mut pipe = redis::pipe();
                for name in &names {
                    pipe.hgetall(name);
                }
                let hashes: Vec<redis::Value> = pipe
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| redis_error(e, context()))?;
                if hashes.len() != names.len() {
                    return Err(Error::External {
                        system: "redis".into(),
                        context: context(),
                        source: format!(
                            "{} answers to {} HGETALL commands",
                            hashes.len(),
                            names.len()
                        )
                        .into(),
                        retryable: false,
                    });
                }
                hashes
                    .iter()
                    .zip(&names)
                    .map(|(reply, name)| {
                        super::hash::decode(reply).map_err(|e| decode_error(name, e))
                    })
                    .collect()
            }
        }
    }

    fn name(&self) -> String {
        format!("redis:{}", self.template)
    }
}

/// A row that does not decode: not retryable.
fn decode_error(key: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::External {
        system: "redis".into(),
        context: format!("the row under `{key}` does not decode"),
        source: e.into(),
        retryable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key stands where the template's first `{}` is; a template without one is
    /// refused (no connection is made by either).
    #[test]
    fn keys_are_made_from_the_template() {
        let url = "redis://127.0.0.1:1";
        let lookup = RedisLookup::<u64, String>::new(url, "dim:{}:v{}", RedisRow::Json).unwrap();
        assert_eq!(lookup.key_of(&7), "dim:7:v{}");
        let plain = RedisLookup::<u64, String>::new(url, "{}", RedisRow::Hash).unwrap();
        assert_eq!(plain.key_of(&"acme"), "acme");
        let e = RedisLookup::<u64, String>::new(url, "dim:item", RedisRow::Json)
            .err()
            .unwrap();
        assert!(e.to_string().contains("has no `{}`"), "{e}");
    }
}
