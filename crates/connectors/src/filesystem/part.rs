//! One open file of one partition: rows waiting to be encoded, the file being written on
//! the spool disk, and the segments that make it recoverable.

use super::bucket::Bucket;
use super::config::Format;
use super::encode::BatchEncoder;
use super::format::FileWriter;
use arrow::datatypes::SchemaRef;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;
use ferroflow_core::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// What a checkpoint keeps of an open file: its partition, its name and the segments
/// holding its rows so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct OpenState {
    pub(crate) partition: String,
    pub(crate) end: Option<i64>,
    pub(crate) segments: Vec<String>,
    pub(crate) rows: u64,
}

pub(crate) struct OpenPart<T> {
    pub(crate) bucket: Bucket,
    /// The file's name, unique across workers and runs (`<run>-<worker>-<n>`).
    pub(crate) name: String,
    rows: Vec<T>,
    writer: FileWriter,
    pub(crate) spool: PathBuf,
    /// Batches since the last checkpoint, in Arrow IPC stream format, in a file on the
    /// spool disk; `None` until the first batch after a checkpoint.
    segment: Option<(PathBuf, StreamWriter<std::io::BufWriter<std::fs::File>>)>,
    /// Whether the job takes checkpoints (without, there are no segments).
    recoverable: bool,
    segment_count: u32,
    /// Durable segments with every row of the file up to the last checkpoint.
    pub(crate) segments: Vec<String>,
    pub(crate) row_count: u64,
    pub(crate) opened: Instant,
    pub(crate) last_write: Instant,
}

fn ipc_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("file sink: writing a recovery segment: {e}"))
}

impl<T: 'static> OpenPart<T> {
    pub(crate) fn new(
        bucket: Bucket,
        name: String,
        format: &Format,
        schema: &SchemaRef,
        spool: PathBuf,
        recoverable: bool,
    ) -> Result<Self> {
        let writer = FileWriter::create(format, schema, &spool)?;
        let now = Instant::now();
        Ok(Self {
            bucket,
            name,
            rows: Vec::new(),
            writer,
            spool,
            segment: None,
            recoverable,
            segment_count: 0,
            segments: Vec::new(),
            row_count: 0,
            opened: now,
            last_write: now,
        })
    }

    /// Adds a row; encodes the rows gathered once there are `batch_rows` of them.
    /// Returns whether the file reached `target` bytes.
    pub(crate) fn push(
        &mut self,
        row: T,
        batch_rows: usize,
        encoder: &mut dyn BatchEncoder<T>,
        target: u64,
    ) -> Result<bool> {
        self.rows.push(row);
        if self.rows.len() < batch_rows {
            return Ok(false);
        }
        self.flush_rows(encoder)?;
        Ok(self.writer.size() >= target)
    }

    /// Encodes the rows gathered into the file and the current segment.
    pub(crate) fn flush_rows(&mut self, encoder: &mut dyn BatchEncoder<T>) -> Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let batch = encoder.encode(&self.rows)?;
        self.rows.clear();
        self.writer.write(&batch)?;
        if self.recoverable {
            if self.segment.is_none() {
                self.segment_count += 1;
                let path = self
                    .spool
                    .with_extension(format!("seg{}.arrow", self.segment_count));
                let file = std::fs::File::create(&path)
                    .map_err(|e| Error::io(format!("file sink: creating {}", path.display()), e))?;
                let writer = StreamWriter::try_new(
                    std::io::BufWriter::with_capacity(1 << 20, file),
                    &batch.schema(),
                )
                .map_err(ipc_err)?;
                self.segment = Some((path, writer));
            }
            if let Some((_, segment)) = &mut self.segment {
                segment.write(&batch).map_err(ipc_err)?;
            }
        }
        self.row_count += batch.num_rows() as u64;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Adds rows restored from a segment of an earlier run: into the file only (they
    /// are durable already).
    pub(crate) fn replay(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        self.row_count += batch.num_rows() as u64;
        Ok(())
    }

    /// At a checkpoint: the spool file of the segment holding the rows since the last
    /// one (to be stored at `rel`, which joins the file's segments), or `None` if there
    /// are none.
    pub(crate) fn take_segment(
        &mut self,
        rel: String,
        encoder: &mut dyn BatchEncoder<T>,
    ) -> Result<Option<PathBuf>> {
        self.flush_rows(encoder)?;
        let Some((path, mut segment)) = self.segment.take() else {
            return Ok(None);
        };
        segment.finish().map_err(ipc_err)?;
        let mut out = segment.into_inner().map_err(ipc_err)?;
        std::io::Write::flush(&mut out).map_err(ipc_err)?;
        self.segments.push(rel);
        Ok(Some(path))
    }

    pub(crate) fn state(&self) -> OpenState {
        OpenState {
            partition: self.bucket.path.to_string(),
            end: self.bucket.end,
            segments: self.segments.clone(),
            rows: self.row_count,
        }
    }

    /// Finishes the file: encodes what is left and writes the footer. Returns the
    /// spool file, its size, and the segments its rows are in (to delete once the
    /// file is published).
    pub(crate) fn finish(
        mut self,
        encoder: &mut dyn BatchEncoder<T>,
    ) -> Result<(PathBuf, u64, Vec<String>, u64)> {
        self.flush_rows(encoder)?;
        if let Some((path, _)) = self.segment.take() {
            // The finished file holds these rows; the segment is not needed.
            let _ = std::fs::remove_file(path);
        }
        let size = self.writer.finish()?;
        Ok((self.spool, size, self.segments, self.row_count))
    }
}

/// The batches of a stored segment.
pub(crate) fn read_segment(bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| Error::Checkpoint(format!("file sink: reading a recovery segment: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Checkpoint(format!("file sink: reading a recovery segment: {e}")))
}
