//! Dimension tables in files, for the full cache of a lookup join: CSV with a header, or
//! JSON lines. The file is read whole at every load; its size and modification time are
//! its version, so a lookup join that watches it reloads when it is rewritten.

use ferroflow_core::{Error, Result};
use ferroflow_operators::lookup_join::{LookupKey, TableSource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::BufRead;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// How a dimension file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line naming the columns. Every value is
    /// text (an empty one is null); the key column's text is read as a number when the
    /// key type is one.
    Csv,
    /// One JSON object per line.
    JsonLines,
}

impl FileFormat {
    /// The format a file name's extension says: `.csv`, or `.jsonl`, `.ndjson`, `.json`.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::JsonLines),
            _ => None,
        }
    }
}

/// A dimension table in a local file; see the module documentation.
pub struct FileTable<K, V> {
    path: PathBuf,
    key_column: String,
    format: FileFormat,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> FileTable<K, V> {
    /// The table in `path`, keyed by `key_column`, in the format its extension says.
    ///
    /// # Errors
    /// When the extension names no known format.
    pub fn new(path: impl Into<PathBuf>, key_column: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let format = FileFormat::of(&path).ok_or_else(|| {
            Error::Config(format!(
                "dimension file {}: name it .csv or .jsonl (or give the format)",
                path.display()
            ))
        })?;
        Ok(Self::with_format(path, key_column, format))
    }

    /// The table in `path` in `format`.
    pub fn with_format(
        path: impl Into<PathBuf>,
        key_column: impl Into<String>,
        format: FileFormat,
    ) -> Self {
        Self {
            path: path.into(),
            key_column: key_column.into(),
            format,
            _types: PhantomData,
        }
    }
}

impl<K: LookupKey, V: DeserializeOwned> FileTable<K, V> {
    fn error(&self, line: usize, why: impl std::fmt::Display) -> Error {
        Error::External {
            system: "file".into(),
            context: format!("dimension file {} line {line}", self.path.display()),
            source: why.to_string().into(),
            retryable: false,
        }
    }

    /// A row read as a map: its key and value.
    fn row(&self, line: usize, map: Map<String, Value>) -> Result<(K, V)> {
        let key = map
            .get(&self.key_column)
            .cloned()
            .ok_or_else(|| self.error(line, format!("no column `{}`", self.key_column)))?;
        let key = key_of::<K>(key)
            .map_err(|e| self.error(line, format!("column `{}`: {e}", self.key_column)))?;
        let value = serde_json::from_value(Value::Object(map)).map_err(|e| self.error(line, e))?;
        Ok((key, value))
    }

    fn read(&self) -> Result<Vec<(K, V)>> {
        let io = |e: std::io::Error| {
            Error::io(format!("reading dimension file {}", self.path.display()), e)
        };
        match self.format {
            FileFormat::Csv => {
                let mut reader =
                    csv::Reader::from_path(&self.path).map_err(|e| self.error(0, e))?;
                let headers = reader.headers().map_err(|e| self.error(1, e))?.clone();
                let mut rows = Vec::new();
                for (i, record) in reader.records().enumerate() {
                    let record = record.map_err(|e| self.error(i + 2, e))?;
                    let map = headers
                        .iter()
                        .zip(record.iter())
                        .map(|(h, v)| {
                            let v = if v.is_empty() {
                                Value::Null
                            } else {
                                Value::String(v.to_string())
                            };
                            (h.to_string(), v)
                        })
                        .collect();
                    rows.push(self.row(i + 2, map)?);
                }
                Ok(rows)
            }
            FileFormat::JsonLines => {
                let file = std::fs::File::open(&self.path).map_err(io)?;
                let mut rows = Vec::new();
                for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line = line.map_err(io)?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Value>(&line).map_err(|e| self.error(i + 1, e))? {
                        Value::Object(map) => rows.push(self.row(i + 1, map)?),
                        _ => return Err(self.error(i + 1, "not a JSON object")),
                    }
                }
                Ok(rows)
            }
        }
    }
}

/// A key from a value: as it is, or, for text that is a number, as that number.
fn key_of<K: DeserializeOwned>(value: Value) -> std::result::Result<K, serde_json::Error> {
    match serde_json::from_value::<K>(value.clone()) {
        Ok(k) => Ok(k),
        Err(e) => match &value {
            Value::String(s) => match s.parse::<serde_json::Number>() {
                Ok(n) => serde_json::from_value(Value::Number(n)).map_err(|_| e),
                Err(_) => Err(e),
            },
            _ => Err(e),
        },
    }
}

impl<K, V> TableSource for FileTable<K, V>
where
    K: LookupKey,
    V: DeserializeOwned + Clone + Serialize + Send + Sync + 'static,
{
    type Key = K;
    type Value = V;

    async fn load_all(&self) -> Result<Vec<(K, V)>> {
        tokio::task::block_in_place(|| self.read())
    }

    async fn version(&self) -> Result<Option<String>> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| Error::io(format!("reading dimension file {}", self.path.display()), e))?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Ok(Some(format!("{}:{modified}", meta.len())))
    }

    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Item {
        brand: String,
        category2: Option<String>,
        price: String,
    }

    fn load<K: LookupKey>(table: &FileTable<K, Item>) -> Result<Vec<(K, Item)>> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let mut rows = rt.block_on(table.load_all())?;
        rows.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        Ok(rows)
    }

    #[test]
    fn csv_and_json_lines_files_load_with_typed_keys_and_exact_prices() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, "item_id,brand,category1,category2,price\n7,acme,shoes,,12.50\n9,\"zeta, inc\",bags,totes,0.00\n").unwrap();
        let rows = load(&FileTable::<i64, Item>::new(&csv, "item_id").unwrap()).unwrap();
        assert_eq!(
            rows,
            vec![
                (
                    7,
                    Item {
                        brand: "acme".into(),
                        category2: None,
                        price: "12.50".into()
                    }
                ),
                (
                    9,
                    Item {
                        brand: "zeta, inc".into(),
                        category2: Some("totes".into()),
                        price: "0.00".into()
                    }
                ),
            ]
        );
        let jsonl = dir.path().join("items.jsonl");
        std::fs::write(
            &jsonl,
            "{\"item_id\": \"a-1\", \"brand\": \"acme\", \"price\": \"1.10\"}\n\n",
        )
        .unwrap();
        let rows = load(&FileTable::<String, Item>::new(&jsonl, "item_id").unwrap()).unwrap();
        assert_eq!(rows[0].0, "a-1");
        assert_eq!(rows[0].1.price, "1.10");
    }

    #[test]
    fn a_bad_file_says_which_line_and_the_version_follows_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, "item_id,brand,price\n7,acme,1.00\nx,acme,2.00\n").unwrap();
        let table = FileTable::<i64, Item>::new(&csv, "item_id").unwrap();
        let err = load(&table).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("item_id"), "{err}");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let v1 = rt.block_on(table.version()).unwrap();
        std::fs::write(&csv, "item_id,brand,price\n7,acme,1.00\n8,acme,2.00\n").unwrap();
        assert_ne!(rt.block_on(table.version()).unwrap(), v1);
        assert!(FileTable::<i64, Item>::new(dir.path().join("items.xlsx"), "id").is_err());
    }
}
