//! Encoders of Arrow batches into a file being written on the local spool disk.

#[cfg(any(feature = "parquet", feature = "orc"))]
use super::config::Compression;
use super::config::Format;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use ferroflow_core::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A buffered file that counts the bytes written into it.
pub(crate) struct Counting {
    inner: BufWriter<File>,
    bytes: Arc<AtomicU64>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Counting {
    fn done(mut self, path: &Path) -> Result<()> {
        self.inner.flush().map_err(|e| io_err(path, e))?;
        self.inner
            .get_ref()
            .sync_data()
            .map_err(|e| io_err(path, e))
    }
}

fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::io(format!("file sink: writing {}", path.display()), e)
}

fn encode_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("file sink: encoding {}: {e}", path.display()))
}

// One per open file: the writers' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    #[cfg(feature = "parquet")]
    Parquet(parquet::arrow::ArrowWriter<Counting>),
    #[cfg(feature = "orc")]
    Orc(super::orc::OrcWriter<Counting>),
    Json(arrow::json::LineDelimitedWriter<Counting>),
    Csv(arrow::csv::Writer<Counting>),
}

/// One file being written.
pub(crate) struct FileWriter {
    inner: Inner,
    bytes: Arc<AtomicU64>,
    path: std::path::PathBuf,
}

/// Whether `format` can write `schema`: refuses, when the job starts, what the encoder
/// would fail or panic on mid-stream.
pub(crate) fn check_schema(format: &Format, schema: &SchemaRef) -> Result<()> {
    let refuse = |name: &str, t: &DataType, fmt: &str| {
        Err(Error::Config(format!(
            "file sink: column `{name}` of type {t} cannot be written as {fmt}"
        )))
    };
    for field in schema.fields() {
        let t = field.data_type();
        match format {
            Format::Parquet(_) => {
                #[cfg(not(feature = "parquet"))]
                return Err(Error::Config(
                    "file sink: Parquet needs ferroflow built with the `parquet` feature".into(),
                ));
            }
            Format::Orc(_) => {
                #[cfg(not(feature = "orc"))]
                return Err(Error::Config(
                    "file sink: ORC needs ferroflow built with the `orc` feature".into(),
                ));
                #[cfg(feature = "orc")]
                if let Some(why) = super::orc::unsupported(t) {
                    return Err(Error::Config(format!(
                        "file sink: column `{}` cannot be written as ORC: {why}",
                        field.name()
                    )));
                }
            }
            Format::Jsonl => {}
            Format::Csv => {
                if t.is_nested() {
                    return refuse(field.name(), t, "CSV");
                }
            }
        }
    }
    Ok(())
}

impl FileWriter {
    /// A new file at `path` (on the spool disk) for batches of `schema`.
    pub(crate) fn create(format: &Format, schema: &SchemaRef, path: &Path) -> Result<Self> {
        #[cfg(not(any(feature = "parquet", feature = "orc")))]
        let _ = schema;
        let file = File::create(path).map_err(|e| io_err(path, e))?;
        let bytes = Arc::new(AtomicU64::new(0));
        let out = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            bytes: Arc::clone(&bytes),
        };
        let inner = match format {
            #[cfg(feature = "parquet")]
            Format::Parquet(p) => {
                use parquet::basic::{Compression as C, GzipLevel, ZstdLevel};
                use parquet::file::properties::{EnabledStatistics, WriterProperties};
                let compression = match p.compression {
                    Compression::None => C::UNCOMPRESSED,
                    Compression::Snappy => C::SNAPPY,
                    Compression::Zstd => C::ZSTD(ZstdLevel::default()),
                    Compression::Zlib => C::GZIP(GzipLevel::default()),
                    Compression::Lz4 => C::LZ4_RAW,
                };
                let props = WriterProperties::builder()
                    .set_compression(compression)
                    .set_max_row_group_row_count(Some(p.row_group_rows))
                    .set_dictionary_enabled(p.dictionary)
                    .set_statistics_enabled(if p.statistics {
                        EnabledStatistics::Page
                    } else {
                        EnabledStatistics::None
                    })
                    .build();
                let w = parquet::arrow::ArrowWriter::try_new(out, Arc::clone(schema), Some(props))
                    .map_err(|e| encode_err(path, e))?;
                Inner::Parquet(w)
            }
            #[cfg(feature = "orc")]
            Format::Orc(o) => Inner::Orc(
                super::orc::OrcWriter::new(out, schema, o.compression, o.stripe_bytes)
                    .map_err(|e| io_err(path, e))?,
            ),
            Format::Jsonl => Inner::Json(arrow::json::LineDelimitedWriter::new(out)),
            Format::Csv => Inner::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            #[allow(unreachable_patterns)]
            other => {
                return Err(Error::Config(format!(
                    "file sink: {} needs ferroflow built with the `{}` feature",
                    other.extension(),
                    other.extension()
                )))
            }
        };
        Ok(Self {
            inner,
            bytes,
            path: path.to_path_buf(),
        })
    }

    /// Appends `batch`.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let path = &self.path;
        match &mut self.inner {
            #[cfg(feature = "parquet")]
            Inner::Parquet(w) => w.write(batch).map_err(|e| encode_err(path, e)),
            #[cfg(feature = "orc")]
            Inner::Orc(w) => w.write(batch).map_err(|e| io_err(path, e)),
            Inner::Json(w) => w.write(batch).map_err(|e| encode_err(path, e)),
            Inner::Csv(w) => w.write(batch).map_err(|e| encode_err(path, e)),
        }
    }

    /// Bytes the file holds so far, with what a bulk format buffers for its current row
    /// group (an estimate of its encoded size).
    pub(crate) fn size(&self) -> u64 {
        let written = self.bytes.load(Ordering::Relaxed);
        match &self.inner {
            #[cfg(feature = "parquet")]
            Inner::Parquet(w) => written + w.in_progress_size() as u64,
            #[cfg(feature = "orc")]
            Inner::Orc(w) => written + w.buffered() as u64 / 4,
            _ => written,
        }
    }

    /// Writes the footer and syncs the file; returns its size.
    pub(crate) fn finish(self) -> Result<u64> {
        let path = self.path;
        let out = match self.inner {
            #[cfg(feature = "parquet")]
            Inner::Parquet(w) => w.into_inner().map_err(|e| encode_err(&path, e))?,
            #[cfg(feature = "orc")]
            Inner::Orc(w) => w.close().map_err(|e| io_err(&path, e))?,
            Inner::Json(mut w) => {
                w.finish().map_err(|e| encode_err(&path, e))?;
                w.into_inner()
            }
            Inner::Csv(w) => w.into_inner(),
        };
        out.done(&path)?;
        Ok(self.bytes.load(Ordering::Relaxed))
    }
}
