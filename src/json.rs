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
///
/// PostgreSQL prints a jsonb string with exactly serde_json's escapes, so in the usual case the
/// string literals are copied as they stand ([`sections_verbatim`]); any other form of the text
/// goes through serde (strings without escapes borrowed, so that allocates only the list).
pub fn write_sections(out: &mut Vec<u8>, stored: &str) -> serde_json::Result<()> {
    let mark = out.len();
    if sections_verbatim(out, stored.as_bytes()).is_some() {
        return Ok(());
    }
    out.truncate(mark);
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

/// The sections written with their string literals copied from `text`; `None` (with `out` left
/// partly written) unless `text` is an array of objects with exactly the string members `body`
/// and `heading` whose literals are what serde_json would write for their values: no raw control
/// characters, and only the escapes `\" \\ \b \f \n \r \t` and `\u00xx` (lower-case hex) for
/// the other control characters. That is how PostgreSQL's `jsonb` output writes strings.
fn sections_verbatim(out: &mut Vec<u8>, text: &[u8]) -> Option<()> {
    let mut p = Scan { text, at: 0 };
    p.expect(b'[')?;
    out.push(b'[');
    let first = out.len();
    if p.peek()? == b']' {
        p.at += 1;
    } else {
        loop {
            p.expect(b'{')?;
            let (mut heading, mut body) = (None, None);
            loop {
                let key = p.string()?;
                p.expect(b':')?;
                let value = p.string()?;
                let slot = match key {
                    b"\"heading\"" => &mut heading,
                    b"\"body\"" => &mut body,
                    _ => return None,
                };
                if slot.replace(value).is_some() {
                    return None;
                }
                match p.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
            if out.len() > first {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"heading\":");
            out.extend_from_slice(heading?);
            out.extend_from_slice(b",\"body\":");
            out.extend_from_slice(body?);
            out.push(b'}');
            match p.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    out.push(b']');
    p.skip_space();
    (p.at == text.len()).then_some(())
}

/// A cursor over JSON text for [`sections_verbatim`].
struct Scan<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn skip_space(&mut self) {
        while self.at < self.text.len()
            && matches!(self.text[self.at], b' ' | b'\n' | b'\r' | b'\t')
        {
            self.at += 1;
        }
    }

    /// The next byte that is not white space.
    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.text.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }

    /// A string literal, quotes included, if serde_json would write its value the same way.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at - 1;
        loop {
            // Eight bytes at a time while none of them is a quote, a backslash or a control.
            while let Some(word) = self.text.get(self.at..self.at + 8) {
                if escapes(u64::from_le_bytes(word.try_into().expect("8 bytes"))) != 0 {
                    break;
                }
                self.at += 8;
            }
            let b = *self.text.get(self.at)?;
            self.at += 1;
            match b {
                b'"' => return Some(&self.text[start..self.at]),
                0..=0x1f => return None,
                b'\\' => {
                    let e = *self.text.get(self.at)?;
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            let hex = self.text.get(self.at..self.at + 4)?;
                            self.at += 4;
                            let low = |h: u8| matches!(h, b'0'..=b'9' | b'a'..=b'f');
                            let code = match hex {
                                [b'0', b'0', hi @ (b'0' | b'1'), lo] if low(*lo) => {
                                    (hi - b'0') * 16 + (*lo as char).to_digit(16)? as u8
                                }
                                _ => return None,
                            };
                            // These five have short forms, which serde_json uses.
                            if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                _ => {}
            }
        }
    }
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
        let section = |heading: &str, body: &str| Section {
            heading: heading.into(),
            body: body.into(),
        };
        let sets = [
            vec![],
            vec![
                section("Why \"It\" Matters", "line\nbreak, naïve 🚀 back\\slash"),
                section("Plain", "plain"),
            ],
            vec![section(
                "controls \u{0}\u{1}\u{7}\u{8}\u{9}\u{b}\u{c}\u{d}\u{1f}\u{7f}",
                "a longer body that takes more than one eight-byte word \t\r\n end",
            )],
        ];
        for sections in &sets {
            let expected = via_serde(sections);
            // As serde_json prints it, and as PostgreSQL prints jsonb: keys ordered by length,
            // a space after each separator, the same escapes.
            let stored = serde_json::to_value(sections).unwrap().to_string();
            let pg_style = stored.replace("\":", "\": ").replace(",\"", ", \"");
            for text in [&stored, &pg_style, &format!(" {pg_style}\n")] {
                assert_eq!(written(|o| write_sections(o, text).unwrap()), expected);
                // Behind what the row has written already.
                let mut verbatim = b"{\"id\":1,\"sections\":".to_vec();
                assert!(sections_verbatim(&mut verbatim, text.as_bytes()).is_some());
                let verbatim = String::from_utf8(verbatim).unwrap();
                assert_eq!(verbatim, format!("{{\"id\":1,\"sections\":{expected}"));
            }
        }
    }

    #[test]
    fn sections_in_other_forms_go_through_serde() {
        // Valid JSON that a verbatim copy would get wrong (other escapes, other members) or that
        // is no list of sections: the result is still serde_json's, or an error.
        let expected = r#"[{"heading":"é/\u001f","body":"b"}]"#;
        for text in [
            r#"[{"heading": "\u00e9\/\u001F", "body": "b"}]"#,
            r#"[{"heading": "é/\u001f", "body": "b", "extra": "x"}]"#,
            r#"[{"heading": "\u00e9/\u001f", "body": "\u0062"}]"#,
        ] {
            assert!(
                sections_verbatim(&mut Vec::new(), text.as_bytes()).is_none(),
                "{text}"
            );
            assert_eq!(written(|o| write_sections(o, text).unwrap()), expected);
        }
        for text in [
            r#"[{"heading": 1, "body": "b"}]"#,
            r#"[{"heading": "h"}]"#,
            r#"[{"heading": "h", "body": "b"}"#,
            r#"[{"heading": "h", "body": "b"}] x"#,
            r#"{}"#,
        ] {
            assert!(write_sections(&mut Vec::new(), text).is_err(), "{text}");
        }
    }

    #[test]
    fn uuids_match_serde() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(written(|o| write_uuid(o, &id)), via_serde(&id));
    }
}
