//! A JSON-lines file source: one split per file.

use super::writer::SharedWriter;
use ferroflow_core::{Error, Result, Source, SplitPosition, SplitReader, SplitStatus};
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts the records a source sent to its dead-letter output. Clones share the count.
#[derive(Debug, Clone, Default)]
pub struct DeadLetterCounter(Arc<AtomicU64>);

impl DeadLetterCounter {
    /// Records sent to the dead-letter output so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
}

/// Reads JSON values of type `T`, one per line, from a file or from every file of a
/// directory (sorted by name; names starting with `.` or `_` are skipped). Each file is a
/// split. Blank lines are skipped.
///
/// A line that does not parse is **never dropped silently**: with a dead-letter file set
/// ([`Self::with_dead_letter`]) it is appended there as
/// `{"source": "<file>:<line>", "error": "...", "raw": "<the line>"}`, counted
/// ([`Self::dead_letters`] and the `ferroflow_dead_letters_total` metric), and the job goes
/// on; without one, the job stops with [`Error::Malformed`] naming the file and line.
#[derive(Debug)]
pub struct JsonLinesSource<T> {
    path: PathBuf,
    dead_letter: Option<PathBuf>,
    counter: DeadLetterCounter,
    _t: PhantomData<fn() -> T>,
}

impl<T> JsonLinesSource<T> {
    /// A source reading `path` (a file or a directory of files).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            dead_letter: None,
            counter: DeadLetterCounter::default(),
            _t: PhantomData,
        }
    }

    /// Appends malformed lines to `path` (created if missing) instead of failing.
    #[must_use]
    pub fn with_dead_letter(mut self, path: impl Into<PathBuf>) -> Self {
        self.dead_letter = Some(path.into());
        self
    }

    /// The count of dead-lettered records, readable while and after the job runs.
    pub fn dead_letters(&self) -> DeadLetterCounter {
        self.counter.clone()
    }
}

fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let entries =
        std::fs::read_dir(path).map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

impl<T: DeserializeOwned + Send + 'static> Source for JsonLinesSource<T> {
    type Item = T;

    fn name(&self) -> String {
        "jsonl".into()
    }

    fn create_splits(&mut self, _parallelism: usize) -> Result<Vec<Box<dyn SplitReader<T>>>> {
        let dead_letter = match &self.dead_letter {
            Some(p) => Some(SharedWriter::append(p)?),
            None => None,
        };
        let metric = metrics_counter(&self.path);
        Ok(list_files(&self.path)?
            .into_iter()
            .map(|path| {
                Box::new(JsonLinesReader::<T> {
                    path,
                    reader: None,
                    line_no: 0,
                    offset: 0,
                    line: String::new(),
                    dead_letter: dead_letter.clone(),
                    counter: self.counter.clone(),
                    metric: metric.clone(),
                    _t: PhantomData,
                }) as Box<dyn SplitReader<T>>
            })
            .collect())
    }
}

fn metrics_counter(path: &Path) -> metrics::Counter {
    metrics::counter!("ferroflow_dead_letters_total", "source" => path.display().to_string())
}

struct JsonLinesReader<T> {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    line_no: u64,
    /// Byte offset after the last line read.
    offset: u64,
    line: String,
    dead_letter: Option<SharedWriter>,
    counter: DeadLetterCounter,
    metric: metrics::Counter,
    _t: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send> SplitReader<T> for JsonLinesReader<T> {
    fn split_id(&self) -> String {
        self.path.display().to_string()
    }

    fn open(&mut self) -> Result<()> {
        let mut file = File::open(&self.path)
            .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        if self.offset > 0 {
            file.seek(SeekFrom::Start(self.offset))
                .map_err(|e| Error::io(format!("seeking in {}", self.path.display()), e))?;
        }
        self.reader = Some(BufReader::with_capacity(1 << 16, file));
        Ok(())
    }

    fn poll(&mut self, max: usize, out: &mut Vec<T>) -> Result<SplitStatus> {
        let reader = self.reader.as_mut().ok_or_else(|| {
            Error::Internal(format!("{} polled before open", self.path.display()))
        })?;
        let mut dead = 0u64;
        let start = out.len();
        while out.len() - start < max {
            self.line.clear();
            let n = reader
                .read_line(&mut self.line)
                .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
            if n == 0 {
                return self.finish_poll(dead, SplitStatus::Finished);
            }
            self.line_no += 1;
            self.offset += n as u64;
            let text = self.line.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<T>(text) {
                Ok(v) => out.push(v),
                Err(e) => {
                    let location = format!("{}:{}", self.path.display(), self.line_no);
                    let Some(w) = &self.dead_letter else {
                        return Err(Error::Malformed {
                            location,
                            reason: e.to_string(),
                        });
                    };
                    let record = serde_json::json!({"source": location, "error": e.to_string(), "raw": text});
                    w.write_line(&record.to_string())?;
                    dead += 1;
                }
            }
        }
        self.finish_poll(dead, SplitStatus::More)
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({ "offset": self.offset, "line": self.line_no }))
    }

    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        match (position["offset"].as_u64(), position["line"].as_u64()) {
            (Some(offset), Some(line)) => {
                self.offset = offset;
                self.line_no = line;
                Ok(())
            }
            _ => Err(Error::Checkpoint(format!(
                "bad position {position} for {}",
                self.path.display()
            ))),
        }
    }

    fn close(&mut self) -> Result<()> {
        self.reader = None;
        match &self.dead_letter {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl<T> JsonLinesReader<T> {
    fn finish_poll(&mut self, dead: u64, status: SplitStatus) -> Result<SplitStatus> {
        if dead > 0 {
            self.counter.add(dead);
            self.metric.increment(dead);
            tracing::warn!(file = %self.path.display(), count = dead, "Malformed lines sent to the dead-letter file.");
            if let Some(w) = &self.dead_letter {
                w.flush()?;
            }
        }
        Ok(status)
    }
}
