//! A JSON-lines file sink.

use super::writer::create_parent;
use ferroflow_core::{Error, Result, Sink, SinkContext};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Writes each record as one line of JSON.
///
/// With one worker the output is exactly `path`; with `n` workers worker `i` writes
/// `<stem>-<i>.<ext>` beside it ([`JsonLinesSink::output_files`] lists them). Use
/// `stream.global().sink(..)` for a single file from a parallel job. Files are truncated
/// on open and flushed and synced to disk when the input ends; a failed write stops the
/// job with an error naming the file. With checkpoints the file is flushed on every
/// barrier (at-least-once: after a restore, records since the checkpoint are written
/// again); use [`super::JsonLinesPartSink`] for exactly-once output.
#[derive(Debug)]
pub struct JsonLinesSink<T> {
    path: PathBuf,
    file: Option<(PathBuf, BufWriter<File>)>,
    _t: PhantomData<fn(T)>,
}

impl<T> Clone for JsonLinesSink<T> {
    fn clone(&self) -> Self {
        Self::new(self.path.clone())
    }
}

impl<T> JsonLinesSink<T> {
    /// A sink writing to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: None,
            _t: PhantomData,
        }
    }

    /// The files written by a sink on `path` run by `parallelism` workers.
    pub fn output_files(path: &Path, parallelism: usize) -> Vec<PathBuf> {
        (0..parallelism)
            .map(|i| file_for(path, i, parallelism))
            .collect()
    }
}

fn file_for(path: &Path, worker: usize, parallelism: usize) -> PathBuf {
    if parallelism <= 1 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{worker}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{worker}"),
    };
    path.with_file_name(name)
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::io(format!("{what} {}", path.display()), e)
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesSink<T> {
    fn name(&self) -> String {
        "jsonl".into()
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        let path = file_for(&self.path, ctx.worker, ctx.parallelism);
        create_parent(&path)?;
        let file = File::create(&path).map_err(|e| io_err(&path, "creating", e))?;
        self.file = Some((path, BufWriter::with_capacity(1 << 16, file)));
        Ok(())
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        let (path, w) = self
            .file
            .as_mut()
            .ok_or_else(|| Error::Internal("JsonLinesSink written before open".into()))?;
        for record in &batch {
            serde_json::to_writer(&mut *w, record).map_err(|e| match e.io_error_kind() {
                Some(kind) => io_err(path, "writing", std::io::Error::new(kind, e)),
                None => Error::user(format!("serialising a record for {}: {e}", path.display())),
            })?;
            w.write_all(b"\n").map_err(|e| io_err(path, "writing", e))?;
        }
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<Option<serde_json::Value>> {
        if let Some((path, w)) = self.file.as_mut() {
            w.flush().map_err(|e| io_err(path, "flushing", e))?;
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((path, mut w)) = self.file.take() {
            w.flush().map_err(|e| io_err(&path, "flushing", e))?;
            w.get_ref()
                .sync_all()
                .map_err(|e| io_err(&path, "syncing", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_worker_file_names() {
        let p = Path::new("/tmp/out/result.jsonl");
        assert_eq!(
            JsonLinesSink::<u8>::output_files(p, 1),
            vec![p.to_path_buf()]
        );
        assert_eq!(
            JsonLinesSink::<u8>::output_files(p, 2),
            vec![
                PathBuf::from("/tmp/out/result-0.jsonl"),
                PathBuf::from("/tmp/out/result-1.jsonl")
            ]
        );
        assert_eq!(file_for(Path::new("out"), 1, 3), PathBuf::from("out-1"));
    }
}
