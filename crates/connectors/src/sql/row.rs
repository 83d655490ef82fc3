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

/// The columns of `row` as a map, each read by `read` as the value of its type (`None`:
/// a type it does not read).
fn to_map<R: Row>(
    row: &R,
    read: impl Fn(&R, usize, &str) -> Result<Option<Value>, sqlx::Error>,
) -> Decoded
where
    usize: sqlx::ColumnIndex<R>,
{
    let mut map = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let (name, ty) = (col.name(), col.type_info().name());
        let err = |e: sqlx::Error| format!("column `{name}` ({ty}): {e}");
        let value = if row.try_get_raw(i).map_err(err)?.is_null() {
            Value::Null
        } else {
            read(row, i, ty)
                .map_err(err)?
                .ok_or_else(|| unsupported(name, ty))?
        };
        map.insert(name.to_string(), value);
    }
    Ok(map)
}

/// A PostgreSQL row.
pub(super) fn pg(row: &PgRow) -> Decoded {
    to_map(row, |row, i, ty| {
        Ok(Some(match ty {
            "BOOL" => Value::Bool(row.try_get(i)?),
            "INT2" => Value::from(row.try_get::<i16, _>(i)?),
            "INT4" => Value::from(row.try_get::<i32, _>(i)?),
            "INT8" => Value::from(row.try_get::<i64, _>(i)?),
            "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i)?)),
            "FLOAT8" => float(row.try_get::<f64, _>(i)?),
            "NUMERIC" => {
                let mut d = row.try_get::<Decimal, _>(i)?;
                // The value's display scale is in its wire form (bytes 6-7): the
                // decoded zero forgets it (0.00 would come out as 0).
                let raw = row.try_get_raw(i)?;
                if let Some(&[hi, lo]) = raw.as_bytes().ok().and_then(|b| b.get(6..8)) {
                    d.rescale(u32::from(u16::from_be_bytes([hi, lo])));
                }
                Value::String(d.to_string())
            }
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" => {
                Value::String(row.try_get(i)?)
            }
            _ => return Ok(None),
        }))
    })
}

/// A MySQL or MariaDB row.
pub(super) fn mysql(row: &MySqlRow) -> Decoded {
    to_map(row, |row, i, ty| {
        Ok(Some(match ty {
            "BOOLEAN" => Value::Bool(row.try_get(i)?),
            "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" => {
                Value::from(row.try_get::<i64, _>(i)?)
            }
            "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
            | "BIGINT UNSIGNED" => Value::from(row.try_get::<u64, _>(i)?),
            "FLOAT" => float(f64::from(row.try_get::<f32, _>(i)?)),
            "DOUBLE" => float(row.try_get::<f64, _>(i)?),
            "DECIMAL" => Value::String(row.try_get::<Decimal, _>(i)?.to_string()),
            "VARCHAR" | "CHAR" | "TEXT" | "TINYTEXT" | "MEDIUMTEXT" | "LONGTEXT" => {
                Value::String(row.try_get(i)?)
            }
            _ => return Ok(None),
        }))
    })
}
