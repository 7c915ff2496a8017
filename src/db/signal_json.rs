//! Signals read straight into their JSON representation: the hot path of list pages and single
//! reads. Each field is written from the row's bytes as they came from PostgreSQL (no owned
//! string per field, no serde struct in between); the result is byte for byte what serializing
//! `api::signals::Signal` gives (an integration test compares them).

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::row::{Field, Row};
use diesel::sql_types::{
    Array, Float, Jsonb, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use uuid::Uuid;

use super::schema::signals;
use crate::domain::signal::ALL_FIELDS;
use crate::json;

/// The columns of the representation, in its field order ([`ALL_FIELDS`]).
pub type Columns = (
    signals::id,
    signals::slug,
    signals::title,
    signals::summary,
    signals::body,
    signals::score,
    signals::category,
    signals::published_at,
    signals::sections,
    signals::tags,
    signals::source_url,
    signals::created_at,
    signals::updated_at,
);

pub const COLUMNS: Columns = (
    signals::id,
    signals::slug,
    signals::title,
    signals::summary,
    signals::body,
    signals::score,
    signals::category,
    signals::published_at,
    signals::sections,
    signals::tags,
    signals::source_url,
    signals::created_at,
    signals::updated_at,
);

type ColumnTypes = (
    SqlUuid,
    Text,
    Text,
    Text,
    Text,
    SmallInt,
    Text,
    Timestamptz,
    Jsonb,
    Array<Text>,
    Nullable<Text>,
    Timestamptz,
    Timestamptz,
);

type RankedColumnTypes = (
    SqlUuid,
    Text,
    Text,
    Text,
    Text,
    SmallInt,
    Text,
    Timestamptz,
    Jsonb,
    Array<Text>,
    Nullable<Text>,
    Timestamptz,
    Timestamptz,
    Float,
);

/// One signal as its JSON object, with the keys a page needs (ETag, cursor) decoded.
#[derive(Debug, Clone)]
pub struct SignalJson {
    /// `{"id":…,"slug":…,…}`.
    json: Vec<u8>,
    /// Where each member (`"key":value`) starts, by its index in [`ALL_FIELDS`]; it ends where
    /// the next one starts, less the comma (the last one before the closing brace).
    starts: [u32; ALL_FIELDS.len()],
    pub id: Uuid,
    pub score: i16,
    pub published_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The text-search rank when the query selected one, else 0.
    pub rank: f32,
}

impl SignalJson {
    /// The whole object.
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.json
    }

    /// Writes the object with only the fields whose [`ALL_FIELDS`] index `keep` accepts.
    pub fn write_fields(&self, out: &mut Vec<u8>, keep: impl Fn(usize) -> bool) {
        out.push(b'{');
        let mut first = true;
        for i in 0..ALL_FIELDS.len() {
            if !keep(i) {
                continue;
            }
            let start = self.starts[i] as usize;
            let end = match self.starts.get(i + 1) {
                Some(&next) => next as usize - 1,
                None => self.json.len() - 1,
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&self.json[start..end]);
        }
        out.push(b'}');
    }

    fn decode<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
        let mut out = Vec::with_capacity(4096);
        let mut starts = [0u32; ALL_FIELDS.len()];
        let mut member = |out: &mut Vec<u8>, i: usize| {
            out.push(if i == 0 { b'{' } else { b',' });
            starts[i] = out.len() as u32;
            out.push(b'"');
            out.extend_from_slice(ALL_FIELDS[i].as_bytes());
            out.extend_from_slice(b"\":");
        };
        let id: Uuid = row.get_value::<SqlUuid, _, _>(0)?;
        member(&mut out, 0);
        json::write_uuid(&mut out, &id);
        for i in 1..=4 {
            member(&mut out, i);
            write_text(&mut out, row, i)?;
        }
        let score: i16 = row.get_value::<SmallInt, _, _>(5)?;
        member(&mut out, 5);
        json::write_int(&mut out, score.into());
        member(&mut out, 6);
        write_text(&mut out, row, 6)?;
        let published_at: DateTime<Utc> = row.get_value::<Timestamptz, _, _>(7)?;
        member(&mut out, 7);
        json::write_time(&mut out, &published_at);
        member(&mut out, 8);
        with_value(row, 8, |v| match v.as_bytes().split_first() {
            // jsonb's binary format: a version byte (1), then the JSON text.
            Some((1, stored)) => Ok(json::write_sections(
                &mut out,
                std::str::from_utf8(stored)?,
            )?),
            _ => Err("unsupported jsonb format".into()),
        })?;
        member(&mut out, 9);
        with_value(row, 9, |v| write_text_array(&mut out, v.as_bytes()))?;
        member(&mut out, 10);
        let field = row.get(10).ok_or(diesel::result::UnexpectedEndOfRow)?;
        match field.value() {
            Some(v) => json::write_str(&mut out, text(v)?),
            None => out.extend_from_slice(b"null"),
        }
        let created_at: DateTime<Utc> = row.get_value::<Timestamptz, _, _>(11)?;
        member(&mut out, 11);
        json::write_time(&mut out, &created_at);
        let updated_at: DateTime<Utc> = row.get_value::<Timestamptz, _, _>(12)?;
        member(&mut out, 12);
        json::write_time(&mut out, &updated_at);
        out.push(b'}');
        let rank = match row.field_count() > 13 {
            true => row.get_value::<Float, f32, _>(13)?,
            false => 0.0,
        };
        Ok(SignalJson {
            json: out,
            starts,
            id,
            score,
            published_at,
            updated_at,
            rank,
        })
    }
}

/// Runs `f` on the (non-null) value of field `i`.
fn with_value<'a, R>(
    row: &impl Row<'a, Pg>,
    i: usize,
    f: impl FnOnce(PgValue<'_>) -> deserialize::Result<R>,
) -> deserialize::Result<R> {
    let field = row.get(i).ok_or(diesel::result::UnexpectedEndOfRow)?;
    match field.value() {
        Some(v) => f(v),
        None => Err(Box::new(diesel::result::UnexpectedNullError)),
    }
}

/// Writes the text of field `i` as a JSON string.
fn write_text<'a>(out: &mut Vec<u8>, row: &impl Row<'a, Pg>, i: usize) -> deserialize::Result<()> {
    with_value(row, i, |v| {
        json::write_str(out, text(v)?);
        Ok(())
    })
}

fn text<'b>(v: PgValue<'b>) -> deserialize::Result<&'b str> {
    Ok(std::str::from_utf8(v.as_bytes())?)
}

/// Writes a `text[]` in PostgreSQL's binary array format as a JSON array of strings.
fn write_text_array(out: &mut Vec<u8>, bytes: &[u8]) -> deserialize::Result<()> {
    fn take<'b>(rest: &mut &'b [u8], n: usize) -> deserialize::Result<&'b [u8]> {
        let (head, tail) = rest.split_at_checked(n).ok_or("truncated array value")?;
        *rest = tail;
        Ok(head)
    }
    fn int(rest: &mut &[u8]) -> deserialize::Result<i32> {
        let head = take(rest, 4)?;
        Ok(i32::from_be_bytes(head.try_into().expect("4 bytes")))
    }
    let rest = &mut &bytes[..];
    let dimensions = int(rest)?;
    let _has_nulls = int(rest)?;
    let _element_type = int(rest)?;
    let len = match dimensions {
        0 => 0,
        1 => {
            let len = int(rest)?;
            let _lower_bound = int(rest)?;
            len
        }
        _ => return Err("multi-dimensional arrays are not supported".into()),
    };
    out.push(b'[');
    for i in 0..len {
        let n = int(rest)?;
        if n < 0 {
            return Err(Box::new(diesel::result::UnexpectedNullError));
        }
        let element = take(rest, n as usize)?;
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, std::str::from_utf8(element)?);
    }
    out.push(b']');
    Ok(())
}

impl FromSqlRow<ColumnTypes, Pg> for SignalJson {
    fn build_from_row<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
        SignalJson::decode(row)
    }
}

impl FromSqlRow<RankedColumnTypes, Pg> for SignalJson {
    fn build_from_row<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
        SignalJson::decode(row)
    }
}
