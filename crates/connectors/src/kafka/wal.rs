//! The records of a transaction, kept in the checkpoint so that a transaction whose
//! checkpoint completed but whose commit was lost can be written again on restore.
//!
//! Layout per record (integers little-endian): a flags byte (1: key, 2: partition,
//! 4: timestamp), then the key as `u32` length and bytes, the value likewise, the
//! partition as `i32`, the timestamp as `i64`, a `u32` header count and each header as
//! name and value with `u32` lengths. The whole is base64 text inside the committable.

use super::decode::ProducerRecord;
use base64::Engine;

const KEY: u8 = 1;
const PARTITION: u8 = 2;
const TIMESTAMP: u8 = 4;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Kafka records are far below 4 GiB (message.max.bytes).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(b);
}

/// The records as base64 text.
pub(crate) fn encode(records: &[ProducerRecord]) -> String {
    let mut out = Vec::new();
    for r in records {
        let flags = (if r.key.is_some() { KEY } else { 0 })
            | (if r.partition.is_some() { PARTITION } else { 0 })
            | (if r.timestamp.is_some() { TIMESTAMP } else { 0 });
        out.push(flags);
        if let Some(k) = &r.key {
            put_bytes(&mut out, k);
        }
        put_bytes(&mut out, &r.value);
        if let Some(p) = r.partition {
            out.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(t) = r.timestamp {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&u32::try_from(r.headers.len()).unwrap_or(0).to_le_bytes());
        for (k, v) in &r.headers {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v);
        }
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!(
                "record log truncated: {n} bytes wanted, {} left",
                self.rest.len()
            ));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        Ok(self.take(n)?.to_vec())
    }
}

/// The records of base64 text made by [`encode`].
///
/// # Errors
/// Text that is not such a record log.
pub(crate) fn decode(text: &str) -> Result<Vec<ProducerRecord>, String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| format!("record log is not base64: {e}"))?;
    let mut r = Reader { rest: &raw };
    let mut out = Vec::new();
    while !r.rest.is_empty() {
        let [flags] = r.array()?;
        if flags & !(KEY | PARTITION | TIMESTAMP) != 0 {
            return Err(format!("record log: unknown flags {flags:#x}"));
        }
        let key = if flags & KEY != 0 {
            Some(r.bytes()?)
        } else {
            None
        };
        let value = r.bytes()?;
        let partition = if flags & PARTITION != 0 {
            Some(i32::from_le_bytes(r.array()?))
        } else {
            None
        };
        let timestamp = if flags & TIMESTAMP != 0 {
            Some(i64::from_le_bytes(r.array()?))
        } else {
            None
        };
        let n = u32::from_le_bytes(r.array()?) as usize;
        let mut headers = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            let name = String::from_utf8(r.bytes()?)
                .map_err(|e| format!("record log: header name is not UTF-8: {e}"))?;
            headers.push((name, r.bytes()?));
        }
        out.push(ProducerRecord {
            key,
            value,
            partition,
            timestamp,
            headers,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<ProducerRecord> {
        vec![
            ProducerRecord {
                key: Some(b"k1".to_vec()),
                value: b"{\"n\":1}".to_vec(),
                partition: None,
                timestamp: Some(1_700_000_000_000),
                headers: vec![("h".into(), b"v".to_vec()), ("empty".into(), Vec::new())],
            },
            ProducerRecord {
                key: None,
                value: Vec::new(),
                partition: Some(3),
                timestamp: None,
                headers: Vec::new(),
            },
        ]
    }

    #[test]
    fn records_survive_the_round_trip() {
        let records = sample();
        assert_eq!(decode(&encode(&records)).unwrap(), records);
        assert_eq!(decode(&encode(&[])).unwrap(), Vec::new());
    }

    #[test]
    fn damaged_logs_are_refused() {
        let text = encode(&sample());
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        raw.pop();
        let cut = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert!(decode(&cut).unwrap_err().contains("truncated"));
        assert!(decode("not base64!").unwrap_err().contains("base64"));
        let flags = base64::engine::general_purpose::STANDARD.encode([0x80u8]);
        assert!(decode(&flags).unwrap_err().contains("flags"));
    }
}
