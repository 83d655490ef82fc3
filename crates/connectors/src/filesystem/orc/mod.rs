//! An Apache ORC writer for flat schemas (feature `orc`), written here because the kept
//! crate's writer (orc-rust 0.9) panics on decimal columns, which a table of prices
//! needs, and cannot be moved between threads. It writes ORC 0.12 files with the
//! `DIRECT` (run-length v1) encoding of every column, no row index and no column
//! statistics beyond value counts; stripes of a target size; none, Snappy, Zstandard,
//! zlib (deflate) or LZ4 compression. Readers: the Apache ORC C++ and Java libraries
//! (pyarrow, Hive, Spark, Trino). Arrow types: boolean, int8–64, float32/64, utf8, binary, date32,
//! timestamp (any unit, no zone or UTC; written as ORC `timestamp` in UTC) and
//! decimal128 (precision up to 38).

mod proto;
mod rle;

use super::config::Compression;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Decimal128Array, LargeBinaryArray,
    LargeStringArray, StringArray,
};
use arrow::datatypes::{
    DataType, Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
    SchemaRef, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow::record_batch::RecordBatch;
use prost::Message;
use std::io::Write;

/// Seconds from 1970-01-01 to 2015-01-01, ORC's timestamp epoch.
const ORC_EPOCH: i64 = 1_420_070_400;
/// Compression chunk size.
const BLOCK: usize = 256 << 10;

/// Why a schema cannot be written, or `None` if it can.
pub(crate) fn unsupported(t: &DataType) -> Option<String> {
    match t {
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::Date32 => None,
        DataType::Timestamp(_, tz) => match tz.as_deref() {
            None | Some("UTC" | "+00:00" | "Z") => None,
            Some(z) => Some(format!("timestamps in zone {z} (use UTC or none)")),
        },
        DataType::Decimal128(p, _) if *p <= 38 => None,
        other => Some(format!(
            "{other} is not a flat type ORC's writer here handles"
        )),
    }
}

/// One column's streams for the stripe being built.
struct Column {
    kind: DataType,
    present: Vec<bool>,
    nulls: u64,
    values: u64,
    ints: Vec<i64>,
    bools: Vec<bool>,
    bytes: Vec<u8>,
    lengths: Vec<i64>,
    secondary: Vec<i64>,
}

impl Column {
    fn new(kind: DataType) -> Self {
        Self {
            kind,
            present: Vec::new(),
            nulls: 0,
            values: 0,
            ints: Vec::new(),
            bools: Vec::new(),
            bytes: Vec::new(),
            lengths: Vec::new(),
            secondary: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        self.present.len() / 8
            + self.ints.len() * 8
            + self.bools.len() / 8
            + self.bytes.len()
            + self.lengths.len() * 2
            + self.secondary.len() * 2
    }

    fn append(&mut self, array: &ArrayRef) -> Result<(), String> {
        let n = array.len();
        for i in 0..n {
            self.present.push(array.is_valid(i));
        }
        let nulls = array.null_count();
        self.nulls += nulls as u64;
        self.values += (n - nulls) as u64;
        let valid = |i: usize| array.is_valid(i);
        macro_rules! ints {
            ($t:ty) => {{
                let a = array.as_primitive::<$t>();
                self.ints
                    .extend((0..n).filter(|&i| valid(i)).map(|i| i64::from(a.value(i))));
            }};
        }
        match &self.kind {
            DataType::Boolean => {
                let a: &BooleanArray = array.as_boolean();
                self.bools
                    .extend((0..n).filter(|&i| valid(i)).map(|i| a.value(i)));
            }
            DataType::Int8 => {
                let a = array.as_primitive::<Int8Type>();
                self.bytes
                    .extend((0..n).filter(|&i| valid(i)).map(|i| a.value(i) as u8));
            }
            DataType::Int16 => ints!(Int16Type),
            DataType::Int32 => ints!(Int32Type),
            DataType::Int64 => ints!(Int64Type),
            DataType::Date32 => ints!(Date32Type),
            DataType::Float32 => {
                let a = array.as_primitive::<Float32Type>();
                for i in (0..n).filter(|&i| valid(i)) {
                    self.bytes.extend_from_slice(&a.value(i).to_le_bytes());
                }
            }
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                for i in (0..n).filter(|&i| valid(i)) {
                    self.bytes.extend_from_slice(&a.value(i).to_le_bytes());
                }
            }
            DataType::Utf8 => {
                let a: &StringArray = array.as_string();
                self.texts((0..n).filter(|&i| valid(i)).map(|i| a.value(i).as_bytes()));
            }
            DataType::LargeUtf8 => {
                let a: &LargeStringArray = array.as_string();
                self.texts((0..n).filter(|&i| valid(i)).map(|i| a.value(i).as_bytes()));
            }
            DataType::Binary => {
                let a: &BinaryArray = array.as_binary();
                self.texts((0..n).filter(|&i| valid(i)).map(|i| a.value(i)));
            }
            DataType::LargeBinary => {
                let a: &LargeBinaryArray = array.as_binary();
                self.texts((0..n).filter(|&i| valid(i)).map(|i| a.value(i)));
            }
            DataType::Timestamp(unit, _) => {
                let (values, per_second): (&[i64], i64) = match unit {
                    TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().values(), 1),
                    TimeUnit::Millisecond => (
                        array.as_primitive::<TimestampMillisecondType>().values(),
                        1_000,
                    ),
                    TimeUnit::Microsecond => (
                        array.as_primitive::<TimestampMicrosecondType>().values(),
                        1_000_000,
                    ),
                    TimeUnit::Nanosecond => (
                        array.as_primitive::<TimestampNanosecondType>().values(),
                        1_000_000_000,
                    ),
                };
                for i in (0..n).filter(|&i| valid(i)) {
                    let v = values[i];
                    // As ORC's Java writer: seconds truncated toward zero, and the
                    // fraction as non-negative nanoseconds of the floor.
                    let secs = v / per_second;
                    let nanos = v.rem_euclid(per_second) * (1_000_000_000 / per_second);
                    self.ints.push(secs - ORC_EPOCH);
                    self.secondary.push(encode_nanos(nanos));
                }
            }
            DataType::Decimal128(_, scale) => {
                let a: &Decimal128Array = array.as_primitive();
                for i in (0..n).filter(|&i| valid(i)) {
                    rle::varint(&mut self.bytes, rle::zigzag(a.value(i)));
                    self.secondary.push(i64::from(*scale));
                }
            }
            other => return Err(format!("{other} cannot be written as ORC")),
        }
        Ok(())
    }

    fn texts<'a>(&mut self, values: impl Iterator<Item = &'a [u8]>) {
        for v in values {
            self.bytes.extend_from_slice(v);
            self.lengths.push(v.len() as i64);
        }
    }

    /// The column's streams (kind, uncompressed bytes), in file order; clears it.
    fn streams(&mut self) -> Vec<(i32, Vec<u8>)> {
        let mut out = Vec::new();
        if self.present.iter().any(|p| !p) {
            let mut s = Vec::new();
            rle::booleans(&self.present, &mut s);
            out.push((proto::PRESENT, s));
        }
        let mut data = Vec::new();
        match &self.kind {
            DataType::Boolean => rle::booleans(&self.bools, &mut data),
            DataType::Int8 => rle::bytes(&self.bytes, &mut data),
            // Raw bytes: IEEE 754 values, decimal varints, string and binary contents.
            DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary => {
                data = std::mem::take(&mut self.bytes);
            }
            _ => rle::integers(&self.ints, true, &mut data),
        }
        out.push((proto::DATA, data));
        if !self.lengths.is_empty()
            || matches!(
                self.kind,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary
            )
        {
            let mut s = Vec::new();
            rle::integers(&self.lengths, false, &mut s);
            out.push((proto::LENGTH, s));
        }
        match &self.kind {
            DataType::Timestamp(..) => {
                let mut s = Vec::new();
                rle::integers(&self.secondary, false, &mut s);
                out.push((proto::SECONDARY, s));
            }
            DataType::Decimal128(..) => {
                let mut s = Vec::new();
                rle::integers(&self.secondary, true, &mut s);
                out.push((proto::SECONDARY, s));
            }
            _ => {}
        }
        self.present.clear();
        self.ints.clear();
        self.bools.clear();
        self.bytes.clear();
        self.lengths.clear();
        self.secondary.clear();
        out
    }

    fn orc_type(&self) -> proto::Type {
        use proto::kind::*;
        let (kind, precision, scale) = match &self.kind {
            DataType::Boolean => (BOOLEAN, None, None),
            DataType::Int8 => (BYTE, None, None),
            DataType::Int16 => (SHORT, None, None),
            DataType::Int32 => (INT, None, None),
            DataType::Int64 => (LONG, None, None),
            DataType::Float32 => (FLOAT, None, None),
            DataType::Float64 => (DOUBLE, None, None),
            DataType::Utf8 | DataType::LargeUtf8 => (STRING, None, None),
            DataType::Binary | DataType::LargeBinary => (BINARY, None, None),
            DataType::Date32 => (DATE, None, None),
            DataType::Timestamp(..) => (TIMESTAMP, None, None),
            DataType::Decimal128(p, s) => (
                DECIMAL,
                Some(u32::from(*p)),
                Some(u32::try_from(*s).unwrap_or(0)),
            ),
            _ => (STRING, None, None),
        };
        proto::Type {
            kind: Some(kind),
            precision,
            scale,
            ..proto::Type::default()
        }
    }
}

/// Nanoseconds as ORC stores them: trailing decimal zeros (two or more) cut off and
/// their count less one kept in the low three bits.
fn encode_nanos(nanos: i64) -> i64 {
    if nanos == 0 {
        return 0;
    }
    if nanos % 100 != 0 {
        return nanos << 3;
    }
    let (mut n, mut zeros) = (nanos / 100, 1);
    while n % 10 == 0 && zeros < 7 {
        n /= 10;
        zeros += 1;
    }
    (n << 3) | zeros
}

/// Writes one ORC file into `out`.
pub(crate) struct OrcWriter<W: Write> {
    out: W,
    offset: u64,
    columns: Vec<Column>,
    names: Vec<String>,
    compression: Compression,
    stripe_bytes: usize,
    stripe_rows: u64,
    rows: u64,
    stripes: Vec<proto::StripeInformation>,
    values: Vec<(u64, u64)>,
}

impl<W: Write> OrcWriter<W> {
    pub(crate) fn new(
        mut out: W,
        schema: &SchemaRef,
        compression: Compression,
        stripe_bytes: usize,
    ) -> std::io::Result<Self> {
        out.write_all(b"ORC")?;
        Ok(Self {
            out,
            offset: 3,
            columns: schema
                .fields()
                .iter()
                .map(|f| Column::new(f.data_type().clone()))
                .collect(),
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            compression,
            stripe_bytes,
            stripe_rows: 0,
            rows: 0,
            stripes: Vec::new(),
            values: vec![(0, 0); schema.fields().len()],
        })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> std::io::Result<()> {
        for (c, array) in self.columns.iter_mut().zip(batch.columns()) {
            c.append(array).map_err(std::io::Error::other)?;
        }
        self.stripe_rows += batch.num_rows() as u64;
        if self.buffered() >= self.stripe_bytes {
            self.flush_stripe()?;
        }
        Ok(())
    }

    /// Bytes of the stripe being built (before compression).
    pub(crate) fn buffered(&self) -> usize {
        self.columns.iter().map(Column::size).sum()
    }

    fn compress(&self, raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
        compress_with(self.compression, raw)
    }

    fn flush_stripe(&mut self) -> std::io::Result<()> {
        if self.stripe_rows == 0 {
            return Ok(());
        }
        let start = self.offset;
        let mut footer = proto::StripeFooter {
            writer_timezone: Some("UTC".into()),
            ..proto::StripeFooter::default()
        };
        footer.columns.push(proto::ColumnEncoding { kind: Some(0) });
        let mut data_length = 0u64;
        for (i, c) in self.columns.iter_mut().enumerate() {
            self.values[i].0 += c.values;
            self.values[i].1 += c.nulls;
            c.values = 0;
            c.nulls = 0;
            footer.columns.push(proto::ColumnEncoding { kind: Some(0) });
            for (kind, raw) in c.streams() {
                let body = compress_with(self.compression, raw)?;
                self.out.write_all(&body)?;
                data_length += body.len() as u64;
                footer.streams.push(proto::Stream {
                    kind: Some(kind),
                    column: Some(i as u32 + 1),
                    length: Some(body.len() as u64),
                });
            }
        }
        let footer_bytes = self.compress(footer.encode_to_vec())?;
        self.out.write_all(&footer_bytes)?;
        self.offset += data_length + footer_bytes.len() as u64;
        self.stripes.push(proto::StripeInformation {
            offset: Some(start),
            index_length: Some(0),
            data_length: Some(data_length),
            footer_length: Some(footer_bytes.len() as u64),
            number_of_rows: Some(self.stripe_rows),
        });
        self.rows += self.stripe_rows;
        self.stripe_rows = 0;
        Ok(())
    }

    /// Writes the last stripe and the file's footer; returns the output.
    pub(crate) fn close(mut self) -> std::io::Result<W> {
        self.flush_stripe()?;
        let n = self.columns.len() as u32;
        let mut types = vec![proto::Type {
            kind: Some(proto::kind::STRUCT),
            subtypes: (1..=n).collect(),
            field_names: self.names.clone(),
            ..proto::Type::default()
        }];
        types.extend(self.columns.iter().map(Column::orc_type));
        let mut statistics = vec![proto::ColumnStatistics {
            number_of_values: Some(self.rows),
            has_null: Some(false),
        }];
        statistics.extend(
            self.values
                .iter()
                .map(|&(values, nulls)| proto::ColumnStatistics {
                    number_of_values: Some(values),
                    has_null: Some(nulls > 0),
                }),
        );
        let footer = proto::Footer {
            header_length: Some(3),
            content_length: Some(self.offset),
            stripes: std::mem::take(&mut self.stripes),
            types,
            number_of_rows: Some(self.rows),
            statistics,
            row_index_stride: Some(0),
        };
        let footer_bytes = self.compress(footer.encode_to_vec())?;
        let postscript = proto::PostScript {
            footer_length: Some(footer_bytes.len() as u64),
            compression: Some(match self.compression {
                Compression::None => 0,
                Compression::Zlib => 1,
                Compression::Snappy => 2,
                Compression::Lz4 => 4,
                Compression::Zstd => 5,
            }),
            compression_block_size: (self.compression != Compression::None).then_some(BLOCK as u64),
            version: vec![0, 12],
            metadata_length: Some(0),
            writer_version: Some(6),
            magic: Some("ORC".into()),
        }
        .encode_to_vec();
        self.out.write_all(&footer_bytes)?;
        self.out.write_all(&postscript)?;
        self.out.write_all(&[postscript.len() as u8])?;
        self.offset += (footer_bytes.len() + postscript.len() + 1) as u64;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// `raw` in compression chunks: each a 3-byte header (length × 2, plus 1 if the chunk
/// is stored as it was because compressing did not make it smaller) and the bytes.
fn compress_with(compression: Compression, raw: Vec<u8>) -> std::io::Result<Vec<u8>> {
    if compression == Compression::None {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() / 2 + 16);
    for chunk in raw.chunks(BLOCK) {
        let packed = match compression {
            Compression::Snappy => snap::raw::Encoder::new()
                .compress_vec(chunk)
                .map_err(std::io::Error::other)?,
            Compression::Zstd => zstd::bulk::compress(chunk, 3)?,
            // ORC's ZLIB is raw deflate, without zlib's header and checksum.
            Compression::Zlib => {
                use std::io::Write as _;
                let mut encoder = flate2::write::DeflateEncoder::new(
                    Vec::with_capacity(chunk.len() / 2),
                    flate2::Compression::default(),
                );
                encoder.write_all(chunk)?;
                encoder.finish()?
            }
            // ORC's LZ4 is the block format, without a frame or a size prefix.
            Compression::Lz4 => lz4_flex::block::compress(chunk),
            Compression::None => chunk.to_vec(),
        };
        let (body, original) = if packed.len() < chunk.len() {
            (&packed[..], 0)
        } else {
            (chunk, 1)
        };
        let header = ((body.len() as u32) << 1) | original;
        out.extend_from_slice(&header.to_le_bytes()[..3]);
        out.extend_from_slice(body);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanos_lose_their_trailing_zeros() {
        assert_eq!(encode_nanos(0), 0);
        assert_eq!(encode_nanos(1), 8);
        assert_eq!(encode_nanos(1_000), (1 << 3) | 2);
        assert_eq!(encode_nanos(500_000_000), (5 << 3) | 7);
        assert_eq!(encode_nanos(120_000_000), (12 << 3) | 6);
    }
}
