//! An exactly-once JSON-lines sink writing part files into a directory.

use ferroflow_core::{Error, Result, Sink, SinkContext};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Writes records as JSON lines into part files of a directory, published only when the
/// checkpoint that covers them completes: with checkpoints enabled, the published output
/// of a job that fails and is restored is exactly that of a run that never failed.
///
/// Files, per worker `w`, run `a` (the job's attempt number) and part `s`:
///
/// ```text
/// .part-<w>-<a>-<s>.inprogress   being written
/// .part-<w>-<a>-<s>.pending      complete, waiting for its checkpoint to complete
/// part-<w>-<a>-<s>.jsonl         published
/// ```
///
/// Read the output as every `part-*.jsonl` file of the directory ([`Self::published`]).
/// On restore, each instance first publishes what the restored checkpoint had prepared,
/// then deletes hidden files of earlier runs (data written after the restored checkpoint,
/// which the restored job writes again). Without checkpoints, parts are published when the
/// input ends.
#[derive(Debug)]
pub struct JsonLinesPartSink<T> {
    dir: PathBuf,
    worker: usize,
    attempt: u64,
    seq: u64,
    current: Option<Part>,
    _t: PhantomData<fn(T)>,
}

#[derive(Debug)]
struct Part {
    name: String,
    writer: BufWriter<File>,
}

impl<T> Clone for JsonLinesPartSink<T> {
    fn clone(&self) -> Self {
        Self::new(self.dir.clone())
    }
}

impl<T> JsonLinesPartSink<T> {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            worker: 0,
            attempt: 0,
            seq: 0,
            current: None,
            _t: PhantomData,
        }
    }

    /// The published part files of `dir`, sorted by name.
    ///
    /// # Errors
    /// When the directory cannot be listed.
    pub fn published(dir: &Path) -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    fn stem(&self) -> String {
        format!("part-{}-{}-{}", self.worker, self.attempt, self.seq)
    }

    fn io(&self, what: &str, name: &str, e: std::io::Error) -> Error {
        Error::io(format!("{what} {}", self.dir.join(name).display()), e)
    }

    /// Closes the part being written and renames it to `to(stem)`; returns the names.
    fn close_part(&mut self, to: impl Fn(&str) -> String) -> Result<Option<(String, String)>> {
        let Some(mut part) = self.current.take() else {
            return Ok(None);
        };
        part.writer
            .flush()
            .map_err(|e| self.io("flushing", &part.name, e))?;
        part.writer
            .get_ref()
            .sync_all()
            .map_err(|e| self.io("syncing", &part.name, e))?;
        let stem = self.stem();
        let target = to(&stem);
        std::fs::rename(self.dir.join(&part.name), self.dir.join(&target))
            .map_err(|e| self.io("renaming", &part.name, e))?;
        self.seq += 1;
        Ok(Some((target, format!("{stem}.jsonl"))))
    }

    /// Deletes hidden files left by earlier runs for the workers this instance stands for.
    fn remove_stale(&self, parallelism: usize) -> Result<()> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| self.io("listing", "", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(".part-") else {
                continue;
            };
            let mut fields = rest.split(['-', '.']);
            let (Some(w), Some(a)) = (fields.next(), fields.next()) else {
                continue;
            };
            let (Ok(w), Ok(a)) = (w.parse::<usize>(), a.parse::<u64>()) else {
                continue;
            };
            if a != self.attempt && w % parallelism.max(1) == self.worker {
                tracing::debug!(file = %name, "Removing a part file of an earlier run.");
                std::fs::remove_file(entry.path()).map_err(|e| self.io("removing", &name, e))?;
            }
        }
        Ok(())
    }
}

impl<T: Serialize + Send + 'static> Sink<T> for JsonLinesPartSink<T> {
    fn name(&self) -> String {
        "jsonl-parts".into()
    }

    fn open(&mut self, ctx: &SinkContext) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io("creating", "", e))?;
        self.worker = ctx.worker;
        self.attempt = ctx.attempt;
        self.commit(ctx.restored_commits.clone())?;
        self.remove_stale(ctx.parallelism)
    }

    fn write(&mut self, batch: Vec<T>) -> Result<()> {
        if self.current.is_none() {
            let name = format!(".{}.inprogress", self.stem());
            let file =
                File::create(self.dir.join(&name)).map_err(|e| self.io("creating", &name, e))?;
            self.current = Some(Part {
                name,
                writer: BufWriter::with_capacity(1 << 16, file),
            });
        }
        let dir = self.dir.clone();
        let Some(part) = self.current.as_mut() else {
            return Ok(());
        };
        for record in &batch {
            serde_json::to_writer(&mut part.writer, record).map_err(|e| {
                Error::user(format!("serialising a record for {}: {e}", dir.display()))
            })?;
            part.writer
                .write_all(b"\n")
                .map_err(|e| Error::io(format!("writing {}", dir.join(&part.name).display()), e))?;
        }
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<Option<serde_json::Value>> {
        Ok(self
            .close_part(|stem| format!(".{stem}.pending"))?
            .map(|(pending, published)| serde_json::json!({ "pending": pending, "published": published })))
    }

    fn commit(&mut self, committables: Vec<serde_json::Value>) -> Result<()> {
        for c in committables {
            let (Some(pending), Some(published)) = (c["pending"].as_str(), c["published"].as_str())
            else {
                return Err(Error::Checkpoint(format!(
                    "not a part-file committable: {c}"
                )));
            };
            let (from, to) = (self.dir.join(pending), self.dir.join(published));
            if from.exists() {
                std::fs::rename(&from, &to).map_err(|e| self.io("publishing", pending, e))?;
            } else if !to.exists() {
                return Err(Error::io(
                    format!("publishing {}", from.display()),
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "neither the pending nor the published part exists: committed data was lost",
                    ),
                ));
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.close_part(|stem| format!("{stem}.jsonl"))?;
        Ok(())
    }
}
