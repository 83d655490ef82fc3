//! The click record the job lands; its columns and its fast path into Arrow's builders
//! are derived (`ArrowRecord`).

use ferroflow::connectors::filesystem::ArrowRecord;
use ferroflow::connectors::ClickEvent;
use serde::{Deserialize, Deserializer, Serialize};

/// One click, as read from JSON lines or Kafka: `ts` in epoch milliseconds, `price` a
/// decimal string with at most two decimals (`"12.34"`), kept as cents. The table's
/// columns: `ts` timestamp, `user_id` string, `item_id` bigint, six dimensions,
/// `is_new` boolean, `price` decimal(12,2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ArrowRecord)]
pub struct Click {
    #[arrow(timestamp = "ms", tz = "UTC")]
    pub ts: i64,
    #[serde(deserialize_with = "text_or_number")]
    pub user_id: String,
    pub item_id: i64,
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub category1: Option<String>,
    #[serde(default)]
    pub category2: Option<String>,
    #[serde(default)]
    pub province: Option<String>,
    #[serde(default)]
    pub activity: Option<String>,
    #[serde(default)]
    pub is_new: Option<bool>,
    /// Cents.
    #[arrow(decimal(12, 2), rename = "price")]
    #[serde(
        rename = "price",
        deserialize_with = "cents",
        serialize_with = "cents_text",
        default
    )]
    pub price_cents: Option<i64>,
}

fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        other => {
            return Err(serde::de::Error::custom(format!(
                "user_id must be a string or a number, not {other}"
            )))
        }
    })
}

/// The largest price decimal(12,2) holds, in cents.
const MAX_CENTS: i64 = 999_999_999_999;

/// `"12.34"` (or `"12"`, `"12.3"`) as 1234 cents; more than two decimals, a value that
/// does not fit decimal(12,2), or anything else is an error (the line goes to the dead
/// letters).
pub fn parse_cents(text: &str) -> Result<i64, String> {
    let bad = || format!("price `{text}` is not a decimal(12,2)");
    let (neg, t) = match text.trim().strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.trim()),
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
    let cents = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    if cents > MAX_CENTS {
        return Err(bad());
    }
    Ok(if neg { -cents } else { cents })
}

fn cents<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => {
            parse_cents(&s).map(Some).map_err(serde::de::Error::custom)
        }
        Some(serde_json::Value::Number(n)) => parse_cents(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(other) => Err(serde::de::Error::custom(format!(
            "price must be a decimal string, not {other}"
        ))),
    }
}

fn cents_text<S: serde::Serializer>(c: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match c {
        Some(c) => s.serialize_str(&format!(
            "{}{}.{:02}",
            if *c < 0 { "-" } else { "" },
            c.abs() / 100,
            c.abs() % 100
        )),
        None => s.serialize_none(),
    }
}

const SITES: [&str; 3] = ["main", "outlet", "global"];
const PLATFORMS: [&str; 4] = ["ios", "android", "web", "mini"];
const PROVINCES: [&str; 6] = [
    "Guangdong",
    "Zhejiang",
    "Jiangsu",
    "Shanghai",
    "Beijing",
    "Sichuan",
];
const ACTIVITIES: [&str; 3] = ["none", "flash", "double11"];

impl Click {
    /// A full click from a generated event: its fields follow from its ids.
    pub fn generated(c: &ClickEvent) -> Self {
        let pick = |n: u64, of: &[&str]| of[(n % of.len() as u64) as usize].to_string();
        Self {
            ts: c.ts,
            user_id: format!("u{}", c.user_id),
            item_id: c.item_id as i64,
            site: Some(pick(c.user_id, &SITES)),
            platform: Some(pick(c.seq / 7, &PLATFORMS)),
            category1: Some(format!("c{}", c.category % 20)),
            category2: Some(format!("c{}", c.category)),
            province: Some(pick(c.user_id / 3, &PROVINCES)),
            activity: Some(pick(c.seq / 1000, &ACTIVITIES)),
            is_new: Some(c.user_id.is_multiple_of(10)),
            price_cents: Some(((c.item_id * 7919) % 100_000) as i64 + 99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices() {
        assert_eq!(parse_cents("12.34"), Ok(1234));
        assert_eq!(parse_cents("12.3"), Ok(1230));
        assert_eq!(parse_cents("-0.05"), Ok(-5));
        assert!(parse_cents("1.234").is_err());
        assert!(parse_cents("abc").is_err());
        assert!(parse_cents("10000000000.00").is_err());
    }
}
