//! The parts of ORC's metadata (`orc_proto.proto` of the ORC specification, protobuf 2)
//! this writer fills in, with the specification's field numbers.
#![allow(missing_docs)]

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PostScript {
    #[prost(uint64, optional, tag = "1")]
    pub footer_length: Option<u64>,
    #[prost(int32, optional, tag = "2")]
    pub compression: Option<i32>,
    #[prost(uint64, optional, tag = "3")]
    pub compression_block_size: Option<u64>,
    #[prost(uint32, repeated, tag = "4")]
    pub version: Vec<u32>,
    #[prost(uint64, optional, tag = "5")]
    pub metadata_length: Option<u64>,
    #[prost(uint32, optional, tag = "6")]
    pub writer_version: Option<u32>,
    #[prost(string, optional, tag = "8000")]
    pub magic: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Footer {
    #[prost(uint64, optional, tag = "1")]
    pub header_length: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub content_length: Option<u64>,
    #[prost(message, repeated, tag = "3")]
    pub stripes: Vec<StripeInformation>,
    #[prost(message, repeated, tag = "4")]
    pub types: Vec<Type>,
    #[prost(uint64, optional, tag = "6")]
    pub number_of_rows: Option<u64>,
    #[prost(message, repeated, tag = "7")]
    pub statistics: Vec<ColumnStatistics>,
    #[prost(uint32, optional, tag = "8")]
    pub row_index_stride: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StripeInformation {
    #[prost(uint64, optional, tag = "1")]
    pub offset: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    pub index_length: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    pub data_length: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    pub footer_length: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    pub number_of_rows: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Type {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, repeated, tag = "2")]
    pub subtypes: Vec<u32>,
    #[prost(string, repeated, tag = "3")]
    pub field_names: Vec<String>,
    #[prost(uint32, optional, tag = "5")]
    pub precision: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub scale: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StripeFooter {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
    #[prost(message, repeated, tag = "2")]
    pub columns: Vec<ColumnEncoding>,
    #[prost(string, optional, tag = "3")]
    pub writer_timezone: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Stream {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub column: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    pub length: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ColumnEncoding {
    #[prost(int32, optional, tag = "1")]
    pub kind: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ColumnStatistics {
    #[prost(uint64, optional, tag = "1")]
    pub number_of_values: Option<u64>,
    #[prost(bool, optional, tag = "10")]
    pub has_null: Option<bool>,
}

/// Stream kinds.
pub(crate) const PRESENT: i32 = 0;
pub(crate) const DATA: i32 = 1;
pub(crate) const LENGTH: i32 = 2;
pub(crate) const SECONDARY: i32 = 5;

/// Type kinds.
pub(crate) mod kind {
    pub(crate) const BOOLEAN: i32 = 0;
    pub(crate) const BYTE: i32 = 1;
    pub(crate) const SHORT: i32 = 2;
    pub(crate) const INT: i32 = 3;
    pub(crate) const LONG: i32 = 4;
    pub(crate) const FLOAT: i32 = 5;
    pub(crate) const DOUBLE: i32 = 6;
    pub(crate) const STRING: i32 = 7;
    pub(crate) const BINARY: i32 = 8;
    pub(crate) const TIMESTAMP: i32 = 9;
    pub(crate) const STRUCT: i32 = 12;
    pub(crate) const DECIMAL: i32 = 14;
    pub(crate) const DATE: i32 = 15;
}
