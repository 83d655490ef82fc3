//! A row as a map of its column names to JSON values.

use serde_json::{Map, Number, Value};
use sqlx::mysql::MySqlRow;
use sqlx::postgres::PgRow;
use sqlx::types::Decimal;
use sqlx::{Column, Row, TypeInfo, ValueRef};

type Decoded = Result<Map<String, Value>, String>;

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

fn unsupported(column: &str, type_name: &str) -> String {
    format!(
        "column `{column}` has type {type_name}, which is not read as it is: cast it to text \
         in the query (`{column}::text` on PostgreSQL, `CAST({column} AS CHAR)` on MySQL)"
    )
}

/// A PostgreSQL row.
pub(super) fn pg(row: &PgRow) -> Decoded {
    let mut map = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name();
        let ty = col.type_info().name().to_string();
        let err = |e: sqlx::Error| format!("column `{name}` ({ty}): {e}");
        let null = row.try_get_raw(i).map_err(err)?.is_null();
        let value = if null {
            Value::Null
        } else {
            match ty.as_str() {
                "BOOL" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
                "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(err)?),
                "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(err)?),
                "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
                "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
                "FLOAT8" => float(row.try_get::<f64, _>(i).map_err(err)?),
                "NUMERIC" => {
                    let mut d = row.try_get::<Decimal, _>(i).map_err(err)?;
                    // The value's display scale is in its wire form (bytes 6-7): the
                    // decoded zero forgets it (0.00 would come out as 0).
                    let raw = row.try_get_raw(i).map_err(err)?;
                    if let Some(&[hi, lo]) = raw.as_bytes().ok().and_then(|b| b.get(6..8)) {
                        d.rescale(u32::from(u16::from_be_bytes([hi, lo])));
                    }
                    Value::String(d.to_string())
                }
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
                    Value::String(row.try_get::<String, _>(i).map_err(err)?)
                }
                _ => return Err(unsupported(name, &ty)),
            }
        };
        map.insert(name.to_string(), value);
    }
    Ok(map)
}

/// A MySQL or MariaDB row.
pub(super) fn mysql(row: &MySqlRow) -> Decoded {
    let mut map = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let name = col.name();
        let ty = col.type_info().name().to_string();
        let err = |e: sqlx::Error| format!("column `{name}` ({ty}): {e}");
        let null = row.try_get_raw(i).map_err(err)?.is_null();
        let value = if null {
            Value::Null
        } else {
            match ty.as_str() {
                "BOOLEAN" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                    Value::from(row.try_get::<i64, _>(i).map_err(err)?)
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED"
                | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
                    Value::from(row.try_get::<u64, _>(i).map_err(err)?)
                }
                "FLOAT" => float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
                "DOUBLE" => float(row.try_get::<f64, _>(i).map_err(err)?),
                "DECIMAL" => Value::String(row.try_get::<Decimal, _>(i).map_err(err)?.to_string()),
                "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" => {
                    Value::String(row.try_get::<String, _>(i).map_err(err)?)
                }
                _ => return Err(unsupported(name, &ty)),
            }
        };
        map.insert(name.to_string(), value);
    }
    Ok(map)
}
