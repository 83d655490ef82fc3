//! Built-in in-memory source.

use crate::{Error, Result, Source, SplitPosition, SplitReader, SplitStatus};

/// A bounded source of the records of a collection, in one split.
#[derive(Debug)]
pub struct VecSource<T> {
    items: Option<Vec<T>>,
}

impl<T> VecSource<T> {
    /// A source of `items`.
    pub fn new(items: impl IntoIterator<Item = T>) -> Self {
        Self {
            items: Some(items.into_iter().collect()),
        }
    }
}

impl<T: Send + 'static> Source for VecSource<T> {
    type Item = T;

    fn name(&self) -> String {
        "collection".into()
    }

    fn create_splits(&mut self, _parallelism: usize) -> Result<Vec<Box<dyn SplitReader<T>>>> {
        let items = self.items.take().ok_or_else(|| {
            Error::Config(
                "a collection source hands its records out once and cannot be read again by a \
                 restarted job: use a replayable source, or no restart strategy"
                    .into(),
            )
        })?;
        Ok(vec![Box::new(VecReader {
            items: items.into_iter(),
            read: 0,
        })])
    }
}

struct VecReader<T> {
    items: std::vec::IntoIter<T>,
    read: u64,
}

impl<T: Send> SplitReader<T> for VecReader<T> {
    fn split_id(&self) -> String {
        "collection-0".into()
    }

    fn poll(&mut self, max: usize, out: &mut Vec<T>) -> Result<SplitStatus> {
        let before = out.len();
        out.extend(self.items.by_ref().take(max));
        self.read += (out.len() - before) as u64;
        Ok(if self.items.len() == 0 {
            SplitStatus::Finished
        } else {
            SplitStatus::More
        })
    }

    fn position(&self) -> Option<SplitPosition> {
        Some(serde_json::json!({ "read": self.read }))
    }

    fn seek(&mut self, position: &SplitPosition) -> Result<()> {
        let read = position["read"]
            .as_u64()
            .ok_or_else(|| Error::Checkpoint(format!("bad collection position {position}")))?;
        for _ in 0..read.saturating_sub(self.read) {
            self.items.next();
        }
        self.read = read;
        Ok(())
    }
}
