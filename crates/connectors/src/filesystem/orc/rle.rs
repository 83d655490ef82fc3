//! ORC's run-length encodings, version 1 (the `DIRECT` column encoding): base-128
//! varints, integer runs with a constant delta, byte runs, and booleans as bits.

/// Appends `v` as a base-128 varint, low group first.
pub(crate) fn varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Zigzag: small magnitudes of either sign become small unsigned numbers.
pub(crate) fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

fn delta_run(values: &[i64], at: usize) -> Option<i64> {
    let (a, b, c) = (*values.get(at)?, *values.get(at + 1)?, *values.get(at + 2)?);
    let d = b.checked_sub(a)?;
    ((-128..=127).contains(&d) && c.checked_sub(b) == Some(d)).then_some(d)
}

/// Integer RLE v1: runs of 3–130 values with one delta in [-128, 127] as
/// `len - 3, delta, base`; other values as literal groups of up to 128.
pub(crate) fn integers(values: &[i64], signed: bool, out: &mut Vec<u8>) {
    let put = |out: &mut Vec<u8>, v: i64| {
        if signed {
            varint(out, zigzag(i128::from(v)));
        } else {
            varint(out, u128::from(v as u64));
        }
    };
    let mut i = 0;
    while i < values.len() {
        if let Some(d) = delta_run(values, i) {
            let mut len = 3;
            while len < 130
                && i + len < values.len()
                && values[i + len].checked_sub(values[i + len - 1]) == Some(d)
            {
                len += 1;
            }
            out.push((len - 3) as u8);
            out.push(d as i8 as u8);
            put(out, values[i]);
            i += len;
            continue;
        }
        let start = i;
        while i < values.len() && i - start < 128 && (i == start || delta_run(values, i).is_none())
        {
            i += 1;
        }
        out.push((-((i - start) as i32)) as i8 as u8);
        for &v in &values[start..i] {
            put(out, v);
        }
    }
}

fn byte_run(bytes: &[u8], at: usize) -> bool {
    at + 2 < bytes.len() && bytes[at] == bytes[at + 1] && bytes[at] == bytes[at + 2]
}

/// Byte RLE: runs of 3–130 equal bytes as `len - 3, byte`; others as literal groups
/// of up to 128.
pub(crate) fn bytes(data: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < data.len() {
        if byte_run(data, i) {
            let mut len = 3;
            while len < 130 && i + len < data.len() && data[i + len] == data[i] {
                len += 1;
            }
            out.push((len - 3) as u8);
            out.push(data[i]);
            i += len;
            continue;
        }
        let start = i;
        while i < data.len() && i - start < 128 && (i == start || !byte_run(data, i)) {
            i += 1;
        }
        out.push((-((i - start) as i32)) as i8 as u8);
        out.extend_from_slice(&data[start..i]);
    }
}

/// Booleans packed eight to a byte, first value in the high bit, then byte RLE.
pub(crate) fn booleans(values: &[bool], out: &mut Vec<u8>) {
    let packed: Vec<u8> = values
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (k, &v)| b | (u8::from(v) << (7 - k)))
        })
        .collect();
    bytes(&packed, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_orc_specification() {
        // Integer RLE v1: [7, 7, 7, 7, 7] is a run of 5 with delta 0 and base 7
        // (unsigned): 0x02 0x00 0x07.
        let mut out = Vec::new();
        integers(&[7; 5], false, &mut out);
        assert_eq!(out, [0x02, 0x00, 0x07]);
        // 100 values 1..=100 (unsigned): a run of 100 with delta 1: 0x61 0x01 0x01.
        let mut out = Vec::new();
        integers(&(1..=100).collect::<Vec<_>>(), false, &mut out);
        assert_eq!(out, [0x61, 0x01, 0x01]);
        // Literals [2, 3, 6, 7, 11]: 0xfb 0x02 0x03 0x06 0x07 0x0b.
        let mut out = Vec::new();
        integers(&[2, 3, 6, 7, 11], false, &mut out);
        assert_eq!(out, [0xfb, 0x02, 0x03, 0x06, 0x07, 0x0b]);
        // Byte RLE: 100 zeros are 0x61 0x00; [0x44, 0x45] is 0xfe 0x44 0x45.
        let mut out = Vec::new();
        bytes(&[0; 100], &mut out);
        assert_eq!(out, [0x61, 0x00]);
        let mut out = Vec::new();
        bytes(&[0x44, 0x45], &mut out);
        assert_eq!(out, [0xfe, 0x44, 0x45]);
        // Booleans: [true, false × 7] then nothing: one byte 0x80 as a literal.
        let mut out = Vec::new();
        let mut v = vec![false; 8];
        v[0] = true;
        booleans(&v, &mut out);
        assert_eq!(out, [0xff, 0x80]);
        // Zigzag varints.
        let mut out = Vec::new();
        varint(&mut out, zigzag(-1));
        varint(&mut out, zigzag(150));
        assert_eq!(out, [0x01, 0xac, 0x02]);
    }

    #[test]
    fn runs_and_literals_mix_and_long_runs_split() {
        let values: Vec<i64> = (0..300)
            .map(|i| if i < 200 { 5 } else { i * 1000 })
            .collect();
        let mut out = Vec::new();
        integers(&values, true, &mut out);
        // Two runs of 130 and 70 equal values, then literals.
        assert_eq!(&out[..3], &[127, 0, 10]);
        assert_eq!(&out[3..6], &[67, 0, 10]);
        assert_eq!(out[6], (-100i8) as u8);
        // Deltas too wide for a run stay literals; i64 extremes do not overflow.
        let mut out = Vec::new();
        integers(&[i64::MIN, i64::MAX, i64::MIN], true, &mut out);
        assert_eq!(out[0], (-3i8) as u8);
    }
}
