//! The file sink's settings.

use ferroflow_core::{Error, Result, Zone};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// How files are encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Format {
    /// Apache Parquet (feature `parquet`).
    Parquet(ParquetOptions),
    /// Apache ORC (feature `orc`).
    Orc(OrcOptions),
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header line.
    Csv,
}

impl Format {
    /// The file name extension (`parquet`, `orc`, `jsonl`, `csv`).
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Parquet(_) => "parquet",
            Format::Orc(_) => "orc",
            Format::Jsonl => "jsonl",
            Format::Csv => "csv",
        }
    }

    /// The format named `name` (`parquet`, `orc`, `jsonl`, `csv`) with default options.
    ///
    /// # Errors
    /// [`Error::Config`] for another name.
    pub fn named(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "parquet" => Ok(Format::Parquet(ParquetOptions::default())),
            "orc" => Ok(Format::Orc(OrcOptions::default())),
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            other => Err(Error::Config(format!(
                "unknown file format `{other}` (use parquet, orc, jsonl or csv)"
            ))),
        }
    }

    /// The format with its pages or stripes compressed by `compression`; a row format
    /// (JSON lines, CSV) is written as it is and refuses any compression but `none`.
    pub fn with_compression(self, compression: Compression) -> Result<Self> {
        match self {
            Format::Parquet(p) => Ok(Format::Parquet(ParquetOptions { compression, ..p })),
            Format::Orc(o) => Ok(Format::Orc(OrcOptions { compression, ..o })),
            row if compression == Compression::None => Ok(row),
            _ => Err(Error::Config(format!(
                "{compression:?} compression needs a bulk format (parquet or orc)"
            ))),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "none" | "uncompressed" => Ok(Compression::None),
            "snappy" => Ok(Compression::Snappy),
            "zstd" => Ok(Compression::Zstd),
            "zlib" | "gzip" | "deflate" => Ok(Compression::Zlib),
            "lz4" => Ok(Compression::Lz4),
            other => Err(Error::Config(format!(
                "unknown compression `{other}` (use none, snappy, zstd, zlib or lz4)"
            ))),
        }
    }
}

/// Compression of a bulk format's pages or stripes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None.
    None,
    /// Snappy.
    Snappy,
    /// Zstandard (level 3).
    Zstd,
    /// Deflate (level 6): ORC's `ZLIB`, Parquet's `GZIP`.
    Zlib,
    /// LZ4 blocks: ORC's `LZ4`, Parquet's `LZ4_RAW`.
    Lz4,
}

/// Parquet writer options. Defaults: zstd, row groups of 1 Mi rows, dictionary encoding
/// and page statistics on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParquetOptions {
    /// Page compression: `none`, `snappy`, `zstd`, `zlib` (GZIP) or `lz4` (LZ4_RAW).
    pub compression: Compression,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Dictionary encoding of columns.
    pub dictionary: bool,
    /// Column statistics (min, max, null count) per page and row group.
    pub statistics: bool,
}

impl Default for ParquetOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Zstd,
            row_group_rows: 1 << 20,
            dictionary: true,
            statistics: true,
        }
    }
}

/// ORC writer options. Defaults: zstd, stripes of 32 MiB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrcOptions {
    /// Stream compression: `none`, `snappy`, `zstd`, `zlib` or `lz4`.
    pub compression: Compression,
    /// A stripe is written once the rows gathered for it take this many bytes (before
    /// compression); it is what an open ORC file holds in memory.
    pub stripe_bytes: usize,
}

impl Default for OrcOptions {
    fn default() -> Self {
        Self {
            compression: Compression::Zstd,
            stripe_bytes: 32 << 20,
        }
    }
}

/// When an open file is finished (rolled) and a new one started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RollingPolicy {
    /// Finish a file once it holds this many bytes (as encoded so far; a bulk format's
    /// last row group or stripe adds its compressed size). Default 128 MiB.
    pub target_file_size: u64,
    /// Finish a file this long after it was opened. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub rollover_interval: Duration,
    /// Finish a file that received nothing for this long. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub inactivity_interval: Duration,
}

impl Default for RollingPolicy {
    fn default() -> Self {
        Self {
            target_file_size: 128 << 20,
            rollover_interval: Duration::from_secs(15 * 60),
            inactivity_interval: Duration::from_secs(5 * 60),
        }
    }
}

/// Time partitions: the path under the sink's root that a record's event time selects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionConfig {
    /// The path template: text with fields in braces, `yyyy`, `MM`, `dd`, `HH`, `mm`
    /// and `ss` inside them standing for the partition's local start time. Default
    /// `dt={yyyy-MM-dd}/hm={HHmm}`.
    pub template: String,
    /// How long one partition is; must divide a day (`5m`, `1h`, `1d`). Default `1h`.
    #[serde(with = "humantime_serde")]
    pub length: Duration,
    /// The time zone of the template's fields. Default UTC.
    pub time_zone: Zone,
}

impl Default for PartitionConfig {
    fn default() -> Self {
        Self {
            template: "dt={yyyy-MM-dd}/hm={HHmm}".into(),
            length: Duration::from_secs(3600),
            time_zone: Zone::utc(),
        }
    }
}

/// When and how a time partition is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitConfig {
    /// A partition is committed once the watermark passes its end plus this delay, and
    /// the checkpoint that published its last files completed. Default `0s`.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Write an empty `_SUCCESS` file into each committed partition. Default true.
    pub success_file: bool,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            success_file: true,
        }
    }
}

/// The file sink's settings. In TOML:
///
/// ```toml
/// path = "s3://lake/clicks"
/// format = { kind = "parquet", compression = "zstd" }
/// rolling = { target_file_size = 134217728, rollover_interval = "15m" }
/// partition = { template = "dt={yyyy-MM-dd}/hm={HHmm}", length = "5m", time_zone = "Asia/Shanghai" }
/// commit = { delay = "1m" }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Where the table is: a local path, `file:///dir`, `s3://bucket/prefix` or
    /// `hdfs://namenode:port/dir` (feature `hdfs`). Required.
    pub path: String,
    /// Options for the object store (for S3: `aws_endpoint`, `aws_region`,
    /// `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`).
    pub storage_options: BTreeMap<String, String>,
    /// How files are encoded. Default Parquet with its defaults.
    pub format: Format,
    /// When files are finished.
    pub rolling: RollingPolicy,
    /// Time partitions (used by [`super::TimeBuckets`]).
    pub partition: PartitionConfig,
    /// Partition commit.
    pub commit: CommitConfig,
    /// Rows encoded into one Arrow batch at a time. Default 8192.
    pub batch_rows: usize,
    /// A local directory for files being written (removed once uploaded). Default the
    /// system's temporary directory.
    pub spool_dir: Option<std::path::PathBuf>,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            path: String::new(),
            storage_options: BTreeMap::new(),
            format: Format::Parquet(ParquetOptions::default()),
            rolling: RollingPolicy::default(),
            partition: PartitionConfig::default(),
            commit: CommitConfig::default(),
            batch_rows: 8192,
            spool_dir: None,
        }
    }
}

impl FileSinkConfig {
    /// A configuration writing `format` to `path`, other settings at their defaults.
    pub fn new(path: impl Into<String>, format: Format) -> Self {
        Self {
            path: path.into(),
            format,
            ..Self::default()
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first bad setting.
    pub fn validate(&self) -> Result<()> {
        if self.path.is_empty() {
            return Err(Error::Config("file sink: `path` is required".into()));
        }
        if self.batch_rows == 0 {
            return Err(Error::Config(
                "file sink: `batch_rows` must be positive".into(),
            ));
        }
        if self.rolling.target_file_size == 0 {
            return Err(Error::Config(
                "file sink: `rolling.target_file_size` must be positive".into(),
            ));
        }
        match &self.format {
            Format::Parquet(p) => {
                if p.row_group_rows == 0 {
                    return Err(Error::Config(
                        "file sink: `format.row_group_rows` must be positive".into(),
                    ));
                }
            }
            Format::Orc(o) => {
                if o.stripe_bytes == 0 {
                    return Err(Error::Config(
                        "file sink: `format.stripe_bytes` must be positive".into(),
                    ));
                }
            }
            Format::Jsonl | Format::Csv => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_toml_with_defaults() {
        let cfg: FileSinkConfig = toml::from_str(
            r#"
            path = "s3://lake/clicks"
            format = { kind = "parquet", compression = "snappy" }
            rolling = { rollover_interval = "10m" }
            partition = { length = "5m", time_zone = "Asia/Shanghai" }
            commit = { delay = "1m" }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.path, "s3://lake/clicks");
        let Format::Parquet(p) = &cfg.format else {
            panic!("parquet expected")
        };
        assert_eq!(p.compression, Compression::Snappy);
        assert_eq!(p.row_group_rows, 1 << 20);
        assert_eq!(cfg.rolling.rollover_interval, Duration::from_secs(600));
        assert_eq!(cfg.rolling.target_file_size, 128 << 20);
        assert_eq!(cfg.partition.length, Duration::from_secs(300));
        assert_eq!(cfg.partition.time_zone.name(), "Asia/Shanghai");
        assert_eq!(cfg.commit.delay, Duration::from_secs(60));
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let mut cfg = FileSinkConfig::default();
        assert!(cfg.validate().unwrap_err().to_string().contains("`path`"));
        cfg.path = "/tmp/x".into();
        cfg.format = Format::Parquet(ParquetOptions {
            row_group_rows: 0,
            ..ParquetOptions::default()
        });
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("row_group_rows"));
        assert!(Format::named("avro")
            .unwrap_err()
            .to_string()
            .contains("avro"));
        assert_eq!(Format::named("ORC").unwrap().extension(), "orc");
        assert_eq!(Format::named("JSONL").unwrap().extension(), "jsonl");
    }

    #[test]
    fn compression_by_name_and_per_format() {
        assert_eq!("GZIP".parse::<Compression>().unwrap(), Compression::Zlib);
        assert_eq!("lz4".parse::<Compression>().unwrap(), Compression::Lz4);
        assert!("brotli"
            .parse::<Compression>()
            .unwrap_err()
            .to_string()
            .contains("brotli"));
        let orc = Format::named("orc")
            .unwrap()
            .with_compression(Compression::Lz4)
            .unwrap();
        assert!(matches!(orc, Format::Orc(o) if o.compression == Compression::Lz4));
        assert!(Format::Csv.with_compression(Compression::None).is_ok());
        assert!(Format::Jsonl.with_compression(Compression::Zstd).is_err());
    }
}
