//! Writing JSON by hand for the hot path: the signals of list pages and single reads are written
//! straight from the bytes of the database row into the response, without building owned
//! strings and a serde struct per field first. Every function here writes exactly what
//! `serde_json` writes for the same value (tests compare them), so the two paths cannot differ.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it: `"` and `\`, the short forms
/// `\b \f \n \r \t`, and `\u00XX` for the other control characters.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    while i < bytes.len() {
        // 32 or 8 bytes at a time while none of them needs escaping (nearly all text).
        if i + 32 <= bytes.len() && clean(bytes[i..i + 32].try_into().expect("32 bytes")) {
            i += 32;
            continue;
        }
        if i + 8 <= bytes.len() && escapes(word(i)) == 0 {
            i += 8;
            continue;
        }
        let b = bytes[i];
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 0xf) as usize],
                ]);
                i += 1;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether none of the 32 bytes needs escaping; written without early exit so that the compiler
/// checks them all at once with vector instructions.
#[inline]
fn clean(chunk: &[u8; 32]) -> bool {
    let mut escape = false;
    for &b in chunk {
        escape |= (b < 0x20) | (b == b'"') | (b == b'\\');
    }
    !escape
}

/// Non-zero when any of the eight bytes is `"`, `\` or below 0x20 (bit tricks on the whole word;
/// exact about whether there is one, not about where).
#[inline]
fn escapes(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))
}

/// Writes an integer.
pub fn write_int(out: &mut Vec<u8>, n: i64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[i..]);
}

/// Writes a time as the JSON string RFC 3339 in UTC with `Z`, with 0, 3, 6 or 9 fractional
/// digits as needed: what `to_rfc3339_opts(SecondsFormat::AutoSi, true)` makes.
pub fn write_time(out: &mut Vec<u8>, t: &DateTime<Utc>) {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        // Outside the four-digit years (or a leap second): rare enough for the general path.
        write_str(out, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        return;
    }
    let mut buf = [0u8; 32];
    let two = |buf: &mut [u8], at: usize, v: u32| {
        buf[at] = b'0' + (v / 10) as u8;
        buf[at + 1] = b'0' + (v % 10) as u8;
    };
    buf[0] = b'"';
    two(&mut buf, 1, year as u32 / 100);
    two(&mut buf, 3, year as u32 % 100);
    buf[5] = b'-';
    two(&mut buf, 6, t.month());
    buf[8] = b'-';
    two(&mut buf, 9, t.day());
    buf[11] = b'T';
    two(&mut buf, 12, t.hour());
    buf[14] = b':';
    two(&mut buf, 15, t.minute());
    buf[17] = b':';
    two(&mut buf, 18, t.second());
    let mut len = 20;
    let (digits, mut frac) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (3, n / 1_000_000),
        n if n % 1_000 == 0 => (6, n / 1_000),
        n => (9, n),
    };
    if digits > 0 {
        buf[len] = b'.';
        for k in (0..digits).rev() {
            buf[len + 1 + k] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        len += 1 + digits;
    }
    buf[len] = b'Z';
    buf[len + 1] = b'"';
    out.extend_from_slice(&buf[..len + 2]);
}

/// Writes a UUID as its hyphenated lower-case JSON string.
pub fn write_uuid(out: &mut Vec<u8>, id: &uuid::Uuid) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

/// Writes the sections of a signal from their stored JSON text (an array of objects with
/// `heading` and `body`), compact and in the declared field order, as serde writes `Section`s.
/// Strings without escapes are borrowed from the text, so this allocates only the list.
pub fn write_sections(out: &mut Vec<u8>, stored: &str) -> serde_json::Result<()> {
    #[derive(serde::Deserialize)]
    struct StoredSection<'a> {
        #[serde(borrow)]
        heading: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        body: std::borrow::Cow<'a, str>,
    }
    let sections: Vec<StoredSection<'_>> = serde_json::from_str(stored)?;
    out.push(b'[');
    for (i, s) in sections.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"heading\":");
        write_str(out, &s.heading);
        out.extend_from_slice(b",\"body\":");
        write_str(out, &s.body);
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn via_serde<T: serde::Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    fn written(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        let mut cases: Vec<String> = [
            "",
            "plain ascii text that is longer than eight bytes",
            "quote \" backslash \\ slash / tab \t newline \n cr \r",
            "\u{8}\u{c}\u{0}\u{1}\u{1f}\u{7f} control",
            "naïve — 日本語 🚀 \"q\"",
            "12345678\"",
            "\"1234567",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every byte below 0x80 at every position of the words scanned at once.
        for b in 0u8..0x80 {
            for at in 0..=64 {
                let mut s =
                    "abcdefghijklmnopqrstuvwxyz012345abcdefghijklmnopqrstuvwxyz012345".to_string();
                s.insert(at, b as char);
                cases.push(s);
            }
        }
        for s in &cases {
            assert_eq!(written(|o| write_str(o, s)), via_serde(s), "{s:?}");
        }
    }

    #[test]
    fn integers_match_serde_json() {
        for n in [0i64, 7, 10, -1, -32768, 32767, i64::MIN, i64::MAX] {
            assert_eq!(written(|o| write_int(o, n)), via_serde(&n));
        }
    }

    #[test]
    fn times_match_chrono_rfc3339() {
        let base = Utc.with_ymd_and_hms(2026, 5, 6, 18, 2, 0).unwrap();
        let mut times = vec![
            base,
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 3, 1, 0, 0, 0).unwrap(),
        ];
        for nanos in [
            1,
            120,
            1_000,
            123_000,
            1_000_000,
            5_000_000,
            999_999_999,
            450_000,
        ] {
            times.push(base + chrono::Duration::nanoseconds(nanos));
        }
        for t in &times {
            let expected = format!("\"{}\"", t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
            assert_eq!(written(|o| write_time(o, t)), expected);
        }
    }

    #[test]
    fn sections_match_serde_json() {
        use crate::domain::signal::Section;
        let sections = vec![
            Section {
                heading: "Why \"It\" Matters".into(),
                body: "line\nbreak, naïve 🚀".into(),
            },
            Section {
                heading: "Plain".into(),
                body: "plain".into(),
            },
        ];
        // As PostgreSQL's jsonb prints it: keys reordered, spaces after separators.
        let stored = serde_json::to_value(&sections).unwrap().to_string();
        let pg_style = stored.replace("\":", "\": ").replace(",\"", ", \"");
        for text in [stored.as_str(), pg_style.as_str(), "[]"] {
            let expected = if text == "[]" {
                "[]".to_owned()
            } else {
                via_serde(&sections)
            };
            assert_eq!(written(|o| write_sections(o, text).unwrap()), expected);
        }
        assert!(write_sections(&mut Vec::new(), "[{\"heading\": 1}]").is_err());
    }

    #[test]
    fn uuids_match_serde() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(written(|o| write_uuid(o, &id)), via_serde(&id));
    }
}
