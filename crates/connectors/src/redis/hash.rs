//! A Redis hash read straight into a row type: `HGETALL`'s field/value pairs are handed
//! to the row's `Deserialize` as a map of borrowed strings, with no map of owned strings
//! in between. Every value in a hash is text; a field of a number or boolean type is
//! parsed from it, a string field takes it as it is.

use serde::de::value::{Error as DeError, MapDeserializer};
use serde::de::{DeserializeOwned, Error as _, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// The row in `reply` (one `HGETALL` answer, RESP2 or RESP3): `Ok(None)` for a missing
/// key (an empty hash).
pub(super) fn decode<V: DeserializeOwned>(reply: &redis::Value) -> Result<Option<V>, DeError> {
    let pairs: Vec<(&str, Text<'_>)> = match reply {
        redis::Value::Nil => return Ok(None),
        redis::Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(DeError::custom("HGETALL answered an odd number of items"));
            }
            items
                .chunks_exact(2)
                .map(|pair| Ok((text(&pair[0])?, Text(text(&pair[1])?))))
                .collect::<Result<_, DeError>>()?
        }
        redis::Value::Map(entries) => entries
            .iter()
            .map(|(field, value)| Ok((text(field)?, Text(text(value)?))))
            .collect::<Result<_, DeError>>()?,
        other => {
            return Err(DeError::custom(format!(
                "HGETALL answered {other:?}, not a hash"
            )))
        }
    };
    if pairs.is_empty() {
        return Ok(None);
    }
    V::deserialize(MapDeserializer::new(pairs.into_iter())).map(Some)
}

/// A field name or value as text.
fn text(value: &redis::Value) -> Result<&str, DeError> {
    match value {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| DeError::custom(format!("a field is not UTF-8: {e}"))),
        redis::Value::SimpleString(s) => Ok(s),
        other => Err(DeError::custom(format!("a field is {other:?}, not text"))),
    }
}

/// A hash value: text, read as what the row's field asks for.
struct Text<'a>(&'a str);

impl<'a> IntoDeserializer<'a, DeError> for Text<'a> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

impl Text<'_> {
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError>
    where
        T::Err: std::fmt::Display,
    {
        self.0
            .trim()
            .parse()
            .map_err(|e| DeError::custom(format!("`{}` is not {what}: {e}", self.0)))
    }
}

macro_rules! parsed {
    ($($method:ident => $visit:ident $ty:ty, $what:literal;)*) => {
        $(
            fn $method<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, DeError> {
                visitor.$visit(self.parse::<$ty>($what)?)
            }
        )*
    };
}

impl<'de> serde::Deserializer<'de> for Text<'de> {
    type Error = DeError;

    fn deserialize_any<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, DeError> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<W: Visitor<'de>>(self, visitor: W) -> Result<W::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<W: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: W,
    ) -> Result<W::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<W: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: W,
    ) -> Result<W::Value, DeError> {
        self.0
            .into_deserializer()
            .deserialize_enum(name, variants, visitor)
    }

    parsed! {
        deserialize_bool => visit_bool bool, "a boolean";
        deserialize_i8 => visit_i8 i8, "an integer";
        deserialize_i16 => visit_i16 i16, "an integer";
        deserialize_i32 => visit_i32 i32, "an integer";
        deserialize_i64 => visit_i64 i64, "an integer";
        deserialize_i128 => visit_i128 i128, "an integer";
        deserialize_u8 => visit_u8 u8, "an unsigned integer";
        deserialize_u16 => visit_u16 u16, "an unsigned integer";
        deserialize_u32 => visit_u32 u32, "an unsigned integer";
        deserialize_u64 => visit_u64 u64, "an unsigned integer";
        deserialize_u128 => visit_u128 u128, "an unsigned integer";
        deserialize_f32 => visit_f32 f32, "a number";
        deserialize_f64 => visit_f64 f64, "a number";
    }

    forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Row {
        brand: String,
        price: String,
        stock: u32,
        rating: Option<f64>,
        #[serde(default)]
        active: bool,
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_resp2_and_resp3_hashes_parsing_numbers() {
        let fields = [
            ("brand", "acme"),
            ("price", "12.50"),
            ("stock", "7"),
            ("rating", "4.5"),
            ("active", "true"),
        ];
        let want = Row {
            brand: "acme".into(),
            price: "12.50".into(),
            stock: 7,
            rating: Some(4.5),
            active: true,
        };
        let resp2 = Value::Array(
            fields
                .iter()
                .flat_map(|(f, v)| [bulk(f), bulk(v)])
                .collect(),
        );
        let resp3 = Value::Map(fields.iter().map(|(f, v)| (bulk(f), bulk(v))).collect());
        assert_eq!(decode::<Row>(&resp2).unwrap(), Some(want));
        let Row { stock, .. } = decode::<Row>(&resp3).unwrap().unwrap();
        assert_eq!(stock, 7);
    }

    #[test]
    fn an_empty_hash_is_no_row_and_bad_text_is_an_error() {
        assert_eq!(decode::<Row>(&Value::Array(vec![])).unwrap(), None);
        assert_eq!(decode::<Row>(&Value::Nil).unwrap(), None);
        let bad = Value::Array(vec![
            bulk("brand"),
            bulk("a"),
            bulk("price"),
            bulk("1"),
            bulk("stock"),
            bulk("many"),
        ]);
        let e = decode::<Row>(&bad).unwrap_err().to_string();
        assert!(e.contains("`many` is not an unsigned integer"), "{e}");
        let missing = Value::Array(vec![bulk("brand"), bulk("a")]);
        assert!(decode::<Row>(&missing)
            .unwrap_err()
            .to_string()
            .contains("price"));
        assert!(decode::<Row>(&Value::Int(3)).is_err());
    }
}
