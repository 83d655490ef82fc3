//! Built-in in-memory source.

use crate::{Result, Source, SplitReader, SplitStatus};

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
        Ok(self
            .items
            .take()
            .map(|items| Box::new(VecReader(items.into_iter())) as Box<dyn SplitReader<T>>)
            .into_iter()
            .collect())
    }
}

struct VecReader<T>(std::vec::IntoIter<T>);

impl<T: Send> SplitReader<T> for VecReader<T> {
    fn split_id(&self) -> String {
        "collection-0".into()
    }

    fn poll(&mut self, max: usize, out: &mut Vec<T>) -> Result<SplitStatus> {
        out.extend(self.0.by_ref().take(max));
        Ok(if self.0.len() == 0 {
            SplitStatus::Finished
        } else {
            SplitStatus::More
        })
    }
}
