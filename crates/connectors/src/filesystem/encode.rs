//! Records into Arrow batches.

use arrow::datatypes::{FieldRef, SchemaRef};
use arrow::record_batch::RecordBatch;
use ferroflow_core::{CodecError, Error, Result};
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;

/// Turns rows into one Arrow batch of the sink's schema. Two ways in:
///
/// - [`SerdeEncoder`]: any `Serialize` record, through `serde_arrow`; nothing to write,
///   but about 5–10× slower than Arrow's builders.
/// - A closure `FnMut(&[T]) -> Result<RecordBatch>` that fills Arrow's builders itself
///   (the record type's own code, typically a function beside it): the fast path.
pub trait BatchEncoder<T>: Send + 'static {
    /// One batch holding `rows`, in order.
    ///
    /// # Errors
    /// A row that does not fit the schema (a decimal out of range, say).
    fn encode(&mut self, rows: &[T]) -> Result<RecordBatch>;
}

impl<T, F> BatchEncoder<T> for F
where
    F: FnMut(&[T]) -> Result<RecordBatch> + Send + 'static,
{
    fn encode(&mut self, rows: &[T]) -> Result<RecordBatch> {
        self(rows)
    }
}

/// Encodes `Serialize` records with `serde_arrow`: struct fields become the columns of
/// the schema by name. Timestamps are `i64` epoch values in a `Timestamp` column;
/// decimals may come as strings (`"12.34"`) into a `Decimal128(p, s)` column.
pub struct SerdeEncoder<T> {
    fields: Arc<Vec<FieldRef>>,
    _t: PhantomData<fn(&T)>,
}

impl<T> Clone for SerdeEncoder<T> {
    fn clone(&self) -> Self {
        Self {
            fields: Arc::clone(&self.fields),
            _t: PhantomData,
        }
    }
}

impl<T> SerdeEncoder<T> {
    /// An encoder into `schema`.
    pub fn new(schema: &SchemaRef) -> Self {
        Self {
            fields: Arc::new(schema.fields().iter().cloned().collect()),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + 'static> BatchEncoder<T> for SerdeEncoder<T> {
    fn encode(&mut self, rows: &[T]) -> Result<RecordBatch> {
        serde_arrow::to_record_batch(&self.fields, &rows).map_err(|e| {
            Error::codec(
                "file sink",
                CodecError::with_source("encoding rows into Arrow", e),
            )
        })
    }
}
