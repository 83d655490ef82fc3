//! Dimension tables in files, for the full cache of a lookup join: CSV with a header,
//! JSON lines, or Parquet (feature `parquet`), on the local disk or (feature
//! `object-store`) at an object-store URL such as `s3://bucket/dim/items.parquet`. The
//! file is read whole at every load; its version (size and modification time, or the
//! object's ETag) tells a lookup join that watches it when it was rewritten.

use ferroflow_core::{Error, Result};
use ferroflow_operators::lookup_join::{LookupKey, TableSource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
#[cfg(feature = "object-store")]
use std::collections::BTreeMap;
use std::io::BufRead;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Which keys a load keeps.
type Keep<'a, K> = dyn Fn(&K) -> bool + Send + Sync + 'a;

/// How a dimension file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma-separated values with a header line naming the columns. Every value is
    /// text (an empty one is null); the key column's text is read as a number when the
    /// key type is one.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// Parquet (feature `parquet`): columns keep their types; decimals come as text.
    Parquet,
}

impl FileFormat {
    /// The format a file name's extension says: `.csv`, `.jsonl` (or `.ndjson`,
    /// `.json`), `.parquet`.
    pub fn of(name: &str) -> Option<Self> {
        let ext = Path::new(name).extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" | "json" => Some(Self::JsonLines),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }
}

/// Where the file is.
enum Location {
    Local(PathBuf),
    #[cfg(feature = "object-store")]
    Remote {
        url: String,
        options: BTreeMap<String, String>,
    },
}

/// A dimension table in a file; see the module documentation.
pub struct FileTable<K, V> {
    location: Location,
    key_column: String,
    format: FileFormat,
    _types: PhantomData<fn(K) -> V>,
}

impl<K, V> FileTable<K, V> {
    /// The table in the local file `path`, keyed by `key_column`, in the format its
    /// extension says.
    ///
    /// # Errors
    /// When the extension names no known format.
    pub fn new(path: impl Into<PathBuf>, key_column: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let format = format_of(&path.to_string_lossy())?;
        Ok(Self::with_format(path, key_column, format))
    }

    /// The table in the local file `path` in `format`.
    pub fn with_format(
        path: impl Into<PathBuf>,
        key_column: impl Into<String>,
        format: FileFormat,
    ) -> Self {
        Self {
            location: Location::Local(path.into()),
            key_column: key_column.into(),
            format,
            _types: PhantomData,
        }
    }

    /// The table at an object-store URL (`s3://bucket/items.parquet`, `file:///...`),
    /// in the format its extension says; `options` as for checkpoint storage
    /// (`aws_endpoint`, `aws_region`, ...; credentials also from the environment).
    ///
    /// # Errors
    /// When the extension names no known format.
    #[cfg(feature = "object-store")]
    pub fn at_url(
        url: impl Into<String>,
        key_column: impl Into<String>,
        options: BTreeMap<String, String>,
    ) -> Result<Self> {
        let url = url.into();
        let format = format_of(&url)?;
        Ok(Self {
            location: Location::Remote { url, options },
            key_column: key_column.into(),
            format,
            _types: PhantomData,
        })
    }

    fn describe(&self) -> String {
        match &self.location {
            Location::Local(path) => path.display().to_string(),
            #[cfg(feature = "object-store")]
            Location::Remote { url, .. } => url.clone(),
        }
    }
}

fn format_of(name: &str) -> Result<FileFormat> {
    let format = FileFormat::of(name).ok_or_else(|| {
        Error::Config(format!(
            "dimension file {name}: name it .csv, .jsonl or .parquet (or give the format)"
        ))
    })?;
    if format == FileFormat::Parquet && !cfg!(feature = "parquet") {
        return Err(Error::Config(format!(
            "dimension file {name}: Parquet needs the `parquet` feature"
        )));
    }
    Ok(format)
}

/// The store and path of a URL, opened on the runtime running this task.
#[cfg(feature = "object-store")]
fn store(
    url: &str,
    options: &BTreeMap<String, String>,
) -> Result<(
    std::sync::Arc<dyn ferroflow_core::storage::object_store::ObjectStore>,
    ferroflow_core::storage::object_store::path::Path,
)> {
    ferroflow_core::storage::open_store(url, options, &tokio::runtime::Handle::current())
}

impl<K: LookupKey, V: DeserializeOwned> FileTable<K, V> {
    fn error(&self, line: usize, why: impl std::fmt::Display) -> Error {
        let at = if line > 0 {
            format!(" line {line}")
        } else {
            String::new()
        };
        Error::External {
            system: "file".into(),
            context: format!("dimension file {}{at}", self.describe()),
            source: why.to_string().into(),
            retryable: false,
        }
    }

    fn io(&self, e: impl std::fmt::Display, retryable: bool) -> Error {
        Error::External {
            system: "file".into(),
            context: format!("reading dimension file {}", self.describe()),
            source: e.to_string().into(),
            retryable,
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

    /// The file's bytes.
    async fn bytes(&self) -> Result<Vec<u8>> {
        match &self.location {
            Location::Local(path) => {
                tokio::task::block_in_place(|| std::fs::read(path)).map_err(|e| self.io(e, false))
            }
            #[cfg(feature = "object-store")]
            Location::Remote { url, options } => {
                use ferroflow_core::storage::object_store::ObjectStoreExt;
                let (store, path) = store(url, options)?;
                let got = store.get(&path).await.map_err(|e| self.io(e, true))?;
                Ok(got.bytes().await.map_err(|e| self.io(e, true))?.to_vec())
            }
        }
    }

    /// The rows of the file's `bytes` whose keys `keep` accepts (every row is still checked).
    fn parse(&self, bytes: &[u8], keep: &Keep<'_, K>) -> Result<Vec<(K, V)>> {
        match self.format {
            FileFormat::Csv => {
                let mut reader = csv::Reader::from_reader(bytes);
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
                    let row = self.row(i + 2, map)?;
                    if keep(&row.0) {
                        rows.push(row);
                    }
                }
                Ok(rows)
            }
            FileFormat::JsonLines => {
                let mut rows = Vec::new();
                for (i, line) in bytes.lines().enumerate() {
                    let line = line.map_err(|e| self.io(e, false))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    match serde_json::from_str::<Value>(&line).map_err(|e| self.error(i + 1, e))? {
                        Value::Object(map) => {
                            let row = self.row(i + 1, map)?;
                            if keep(&row.0) {
                                rows.push(row);
                            }
                        }
                        _ => return Err(self.error(i + 1, "not a JSON object")),
                    }
                }
                Ok(rows)
            }
            FileFormat::Parquet => self.parse_parquet(bytes, keep),
        }
    }

    #[cfg(feature = "parquet")]
    fn parse_parquet(&self, bytes: &[u8], keep: &Keep<'_, K>) -> Result<Vec<(K, V)>> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
            .and_then(|b| b.build())
            .map_err(|e| self.error(0, e))?;
        let (mut rows, mut n) = (Vec::new(), 0);
        for batch in reader {
            let batch = batch.map_err(|e| self.error(0, e))?;
            let maps: Vec<Map<String, Value>> =
                serde_arrow::from_record_batch(&batch).map_err(|e| self.error(0, e))?;
            for map in maps {
                // Rows are counted from 1, as lines are in the text formats.
                n += 1;
                let row = self.row(n, map)?;
                if keep(&row.0) {
                    rows.push(row);
                }
            }
        }
        Ok(rows)
    }

    #[cfg(not(feature = "parquet"))]
    fn parse_parquet(&self, _: &[u8], _: &Keep<'_, K>) -> Result<Vec<(K, V)>> {
        Err(self.error(0, "Parquet needs the `parquet` feature"))
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
        self.load_where(&|_| true).await
    }

    /// Parses every row and keeps those of the share only.
    async fn load_where(&self, keep: &Keep<'_, K>) -> Result<Vec<(K, V)>> {
        let bytes = self.bytes().await?;
        tokio::task::block_in_place(|| self.parse(&bytes, keep))
    }

    async fn version(&self) -> Result<Option<String>> {
        match &self.location {
            Location::Local(path) => {
                let meta = std::fs::metadata(path).map_err(|e| self.io(e, false))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                Ok(Some(format!("{}:{modified}", meta.len())))
            }
            #[cfg(feature = "object-store")]
            Location::Remote { url, options } => {
                use ferroflow_core::storage::object_store::ObjectStoreExt;
                let (store, path) = store(url, options)?;
                let meta = store.head(&path).await.map_err(|e| self.io(e, true))?;
                Ok(Some(meta.e_tag.unwrap_or_else(|| {
                    format!(
                        "{}:{}",
                        meta.size,
                        meta.last_modified.timestamp_nanos_opt().unwrap_or(0)
                    )
                })))
            }
        }
    }

    fn name(&self) -> String {
        format!("file:{}", self.describe())
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

    /// Items 7 and 9, as the files of these tests hold them.
    fn acme_and_zeta() -> Vec<(i64, Item)> {
        let item = |brand: &str, category2: Option<&str>, price: &str| Item {
            brand: brand.into(),
            category2: category2.map(Into::into),
            price: price.into(),
        };
        vec![
            (7, item("acme", None, "12.50")),
            (9, item("zeta, inc", Some("totes"), "0.00")),
        ]
    }

    /// The file of [`acme_and_zeta`].
    const ACME_AND_ZETA_CSV: &str = "item_id,brand,category1,category2,price\n7,acme,shoes,,12.50\n9,\"zeta, inc\",bags,totes,0.00\n";
    /// A file whose line 3 has a key that is not a number.
    const BAD_LINE_3_CSV: &str = "item_id,brand,price\n7,acme,1.00\nx,acme,2.00\n";

    /// A runtime for the loads (`block_in_place` needs a multi-threaded one).
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
    }

    fn load<K: LookupKey>(table: &FileTable<K, Item>) -> Result<Vec<(K, Item)>> {
        let mut rows = runtime().block_on(table.load_all())?;
        rows.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
        Ok(rows)
    }

    #[test]
    fn csv_and_json_lines_files_load_with_typed_keys_and_exact_prices() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, ACME_AND_ZETA_CSV).unwrap();
        let rows = load(&FileTable::<i64, Item>::new(&csv, "item_id").unwrap()).unwrap();
        assert_eq!(rows, acme_and_zeta());
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

    /// A worker's share: only the rows it keeps come back, and a bad row outside the
    /// share still fails the load (every row is read and checked).
    #[test]
    fn a_share_keeps_only_its_keys_and_still_checks_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, ACME_AND_ZETA_CSV).unwrap();
        let table = FileTable::<i64, Item>::new(&csv, "item_id").unwrap();
        let rt = runtime();
        let share = rt.block_on(table.load_where(&|k| *k == 9)).unwrap();
        assert_eq!(share, acme_and_zeta()[1..]);
        std::fs::write(&csv, BAD_LINE_3_CSV).unwrap();
        let err = rt.block_on(table.load_where(&|k| *k == 7)).unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
    }

    #[test]
    fn a_bad_file_says_which_line_and_the_version_follows_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("items.csv");
        std::fs::write(&csv, BAD_LINE_3_CSV).unwrap();
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

    #[cfg(feature = "parquet")]
    #[test]
    fn parquet_files_keep_their_column_types() {
        use arrow::datatypes::{DataType, Field};
        #[derive(Serialize)]
        struct Written {
            item_id: i64,
            brand: String,
            category2: Option<String>,
            price: String,
        }
        let rows = vec![
            Written {
                item_id: 7,
                brand: "acme".into(),
                category2: None,
                price: "12.50".into(),
            },
            Written {
                item_id: 9,
                brand: "zeta, inc".into(),
                category2: Some("totes".into()),
                price: "0.00".into(),
            },
        ];
        let fields = vec![
            std::sync::Arc::new(Field::new("item_id", DataType::Int64, false)),
            std::sync::Arc::new(Field::new("brand", DataType::Utf8, false)),
            std::sync::Arc::new(Field::new("category2", DataType::Utf8, true)),
            std::sync::Arc::new(Field::new("price", DataType::Utf8, false)),
        ];
        let batch = serde_arrow::to_record_batch(&fields, &rows).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.parquet");
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let got = load(&FileTable::<i64, Item>::new(&path, "item_id").unwrap()).unwrap();
        assert_eq!(got, acme_and_zeta());
        // A key column of the wrong type names the column and the row.
        let err = load(&FileTable::<bool, Item>::new(&path, "item_id").unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("item_id") && err.to_string().contains("line 1"),
            "{err}"
        );
    }
}
