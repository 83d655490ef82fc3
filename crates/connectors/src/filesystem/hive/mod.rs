//! Hive tables over what the sink writes: the table's definition from the Arrow schema,
//! the format and the partition template ([`HiveTable`], with its `CREATE EXTERNAL
//! TABLE` statement), and, with the `hive` feature, a partition-commit policy that
//! registers each committed partition in a Hive metastore ([`HiveMetastorePolicy`]).

#[cfg(feature = "hive")]
mod metastore;

#[cfg(feature = "hive")]
pub use metastore::{HiveMetastoreConfig, HiveMetastorePolicy, HivePartition};

use super::config::Format;
use arrow::datatypes::{DataType, Schema};
use ferroflow_core::{Error, Result};

/// Serde, input and output format classes Hive reads a format with.
#[cfg_attr(not(feature = "hive"), allow(dead_code))]
pub(crate) struct Storage {
    pub(crate) serde: &'static str,
    pub(crate) input: &'static str,
    pub(crate) output: &'static str,
}

const TEXT_INPUT: &str = "org.apache.hadoop.mapred.TextInputFormat";
const TEXT_OUTPUT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";

/// A Hive table over the sink's files: `database.name`, columns with Hive types, string
/// partition keys, the storage format and the location.
#[derive(Debug, Clone, PartialEq)]
pub struct HiveTable {
    /// Database (`default` when the name has none).
    pub database: String,
    /// Table name.
    pub name: String,
    /// Columns and their Hive types (`decimal(12,2)`, `array<string>`).
    pub columns: Vec<(String, String)>,
    /// Partition keys, all `string`, in path order (`dt`, `hm`).
    pub partition_keys: Vec<String>,
    /// The sink's format.
    pub format: Format,
    /// The table's root URL, the sink's path as the sink names it (a local path becomes
    /// `file:///...`), which the committed partitions' locations start with.
    pub location: String,
}

impl HiveTable {
    /// The table `name` (`db.table` or `table`) over files of `schema` in `format` under
    /// `location`, partitioned by the keys of `template` (`dt={yyyy-MM-dd}/hm={HHmm}`
    /// gives `dt`, `hm`).
    ///
    /// # Errors
    /// [`Error::Config`] for a column type Hive has no name for (unsigned integers,
    /// durations, unions).
    pub fn new(
        name: &str,
        schema: &Schema,
        template: &str,
        format: &Format,
        location: &str,
    ) -> Result<Self> {
        let (database, name) = name.split_once('.').unwrap_or(("default", name));
        let columns = schema
            .fields()
            .iter()
            .map(|f| Ok((f.name().clone(), hive_type(f.data_type())?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            database: database.to_string(),
            name: name.to_string(),
            columns,
            partition_keys: partition_keys(template),
            format: format.clone(),
            location: super::store::url_of(location)?
                .trim_end_matches('/')
                .to_string(),
        })
    }

    pub(crate) fn storage(&self) -> Storage {
        match self.format {
            Format::Orc(_) => Storage {
                serde: "org.apache.hadoop.hive.ql.io.orc.OrcSerde",
                input: "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
                output: "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
            },
            Format::Parquet(_) => Storage {
                serde: "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
                input: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
                output: "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            },
            Format::Jsonl => Storage {
                serde: "org.apache.hive.hcatalog.data.JsonSerDe",
                input: TEXT_INPUT,
                output: TEXT_OUTPUT,
            },
            Format::Csv => Storage {
                serde: "org.apache.hadoop.hive.serde2.OpenCSVSerde",
                input: TEXT_INPUT,
                output: TEXT_OUTPUT,
            },
        }
    }

    /// Table properties: CSV files start with a header line.
    pub(crate) fn properties(&self) -> Vec<(&'static str, &'static str)> {
        match self.format {
            Format::Csv => vec![("skip.header.line.count", "1")],
            _ => Vec::new(),
        }
    }

    /// The `CREATE EXTERNAL TABLE IF NOT EXISTS` statement for the table.
    pub fn ddl(&self) -> String {
        let columns = self
            .columns
            .iter()
            .map(|(name, ty)| format!("  {name} {ty}"))
            .collect::<Vec<_>>()
            .join(",\n");
        let mut ddl = format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {}.{} (\n{columns}\n)\n",
            self.database, self.name
        );
        if !self.partition_keys.is_empty() {
            let keys = self
                .partition_keys
                .iter()
                .map(|k| format!("{k} string"))
                .collect::<Vec<_>>()
                .join(", ");
            ddl.push_str(&format!("PARTITIONED BY ({keys})\n"));
        }
        match self.format {
            Format::Orc(_) => ddl.push_str("STORED AS ORC\n"),
            Format::Parquet(_) => ddl.push_str("STORED AS PARQUET\n"),
            _ => {
                let storage = self.storage();
                ddl.push_str(&format!(
                    "ROW FORMAT SERDE '{}'\nSTORED AS TEXTFILE\n",
                    storage.serde
                ));
            }
        }
        ddl.push_str(&format!("LOCATION '{}'", self.location));
        let properties = self.properties();
        if !properties.is_empty() {
            let properties = properties
                .iter()
                .map(|(k, v)| format!("'{k}'='{v}'"))
                .collect::<Vec<_>>()
                .join(", ");
            ddl.push_str(&format!("\nTBLPROPERTIES ({properties})"));
        }
        ddl.push_str(";\n");
        ddl
    }
}

/// The keys of a Hive-style partition template: the text before `=` in each segment.
pub fn partition_keys(template: &str) -> Vec<String> {
    template
        .split('/')
        .filter_map(|segment| segment.split_once('='))
        .map(|(key, _)| key.to_string())
        .collect()
}

/// Hive's name for an Arrow type.
///
/// # Errors
/// [`Error::Config`] for a type Hive cannot hold.
pub fn hive_type(data_type: &DataType) -> Result<String> {
    Ok(match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::List(item) | DataType::LargeList(item) => {
            format!("array<{}>", hive_type(item.data_type())?)
        }
        DataType::Struct(fields) => {
            let fields = fields
                .iter()
                .map(|f| Ok(format!("{}:{}", f.name(), hive_type(f.data_type())?)))
                .collect::<Result<Vec<_>>>()?;
            format!("struct<{}>", fields.join(","))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                hive_type(kv[0].data_type())?,
                hive_type(kv[1].data_type())?
            ),
            other => {
                return Err(Error::Config(format!(
                    "a map's entries must be a struct of key and value, not {other}"
                )))
            }
        },
        other => {
            return Err(Error::Config(format!(
                "Hive has no column type for Arrow's {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{Field, TimeUnit};
    use std::sync::Arc;

    #[test]
    fn ddl_names_columns_partitions_and_storage() {
        let schema = Schema::new(vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("price", DataType::Decimal128(12, 2), true),
            Field::new(
                "tags",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
        ]);
        let table = HiveTable::new(
            "lake.clicks",
            &schema,
            "dt={yyyy-MM-dd}/hm={HHmm}",
            &Format::named("orc").unwrap(),
            "hdfs://nn:9000/warehouse/clicks/",
        )
        .unwrap();
        assert_eq!(table.database, "lake");
        assert_eq!(table.partition_keys, ["dt", "hm"]);
        let ddl = table.ddl();
        assert!(ddl.starts_with("CREATE EXTERNAL TABLE IF NOT EXISTS lake.clicks ("));
        assert!(ddl.contains("  ts timestamp,\n  price decimal(12,2),\n  tags array<string>\n)"));
        assert!(ddl.contains("PARTITIONED BY (dt string, hm string)\nSTORED AS ORC\n"));
        assert!(ddl.ends_with("LOCATION 'hdfs://nn:9000/warehouse/clicks';\n"));
        let csv = HiveTable::new("t", &schema, "dt={yyyy-MM-dd}", &Format::Csv, "/x").unwrap();
        assert_eq!(csv.database, "default");
        assert!(csv.ddl().contains("OpenCSVSerde"));
        assert!(csv
            .ddl()
            .contains("TBLPROPERTIES ('skip.header.line.count'='1')"));
    }

    #[test]
    fn types_hive_cannot_hold_are_named() {
        let err = hive_type(&DataType::UInt64).unwrap_err().to_string();
        assert!(err.contains("UInt64"), "{err}");
        assert_eq!(
            hive_type(&DataType::Struct(
                vec![Field::new("a", DataType::Int32, true)].into()
            ))
            .unwrap(),
            "struct<a:int>"
        );
    }
}
