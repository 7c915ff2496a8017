//! Signals read straight into their JSON representation: the hot path of list pages and single
//! reads. Each field is written from the row's bytes as they came from PostgreSQL (no owned
//! string per field, no serde struct in between); the result is byte for byte what serializing
//! `domain::signal::Signal` gives (an integration test compares them).

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::row::{Field, Row};
use diesel::sql_types::{BigInt, Float, Nullable, SmallInt, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use super::schema::signals;
use crate::domain::query::Window;
use crate::domain::signal::{field_index, ALL_FIELDS};
use crate::json;

macro_rules! columns {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty => $kind:ident, )*) => {
        /// The columns of the representation, in its field order ([`ALL_FIELDS`]).
        pub type Columns = ($(signals::$name,)*);

        pub const COLUMNS: Columns = ($(signals::$name,)*);

        /// The columns and a text-search rank (what list queries select).
        pub type RankedColumns<Rank> = ($(signals::$name,)* Rank,);

        pub fn ranked_columns<Rank>(rank: Rank) -> RankedColumns<Rank> {
            ($(signals::$name,)* rank,)
        }

        type ColumnTypes = ($(diesel::dsl::SqlTypeOf<signals::$name>,)*);

        type RankedColumnTypes = ($(diesel::dsl::SqlTypeOf<signals::$name>,)* Float,);

        /// Writes every field of the row as a member of the JSON object, each by the writer
        /// its entry names; returns where each member starts.
        fn write_members<'a>(
            out: &mut Vec<u8>,
            row: &impl Row<'a, Pg>,
        ) -> deserialize::Result<[u32; ALL_FIELDS.len()]> {
            let mut starts = [0u32; ALL_FIELDS.len()];
            let mut i = 0;
            $(
                out.push(if i == 0 { b'{' } else { b',' });
                starts[i] = out.len() as u32;
                out.extend_from_slice(concat!("\"", stringify!($name), "\":").as_bytes());
                let field = row.get(i).ok_or(diesel::result::UnexpectedEndOfRow)?;
                write::$kind(out, field.value())?;
                #[allow(unused_assignments)]
                {
                    i += 1;
                }
            )*
            out.push(b'}');
            Ok(starts)
        }
    };
}

crate::signal_fields!(columns);

const ID: usize = field_index("id");
const SCORE: usize = field_index("score");
const PUBLISHED_AT: usize = field_index("published_at");
const UPDATED_AT: usize = field_index("updated_at");

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
        let mut json = Vec::with_capacity(4096);
        let starts = write_members(&mut json, row)?;
        let rank = match row.field_count() > ALL_FIELDS.len() {
            true => row.get_value::<Float, f32, _>(ALL_FIELDS.len())?,
            false => 0.0,
        };
        Ok(SignalJson {
            json,
            starts,
            id: row.get_value::<SqlUuid, Uuid, _>(ID)?,
            score: row.get_value::<SmallInt, i16, _>(SCORE)?,
            published_at: row.get_value::<Timestamptz, DateTime<Utc>, _>(PUBLISHED_AT)?,
            updated_at: row.get_value::<Timestamptz, DateTime<Utc>, _>(UPDATED_AT)?,
            rank,
        })
    }
}

/// How the fast path writes each kind of column (the names after `=>` in `signal_fields!`),
/// from the value's bytes in PostgreSQL's binary format.
mod write {
    use super::*;

    pub fn uuid(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        let id: Uuid = FromSql::<SqlUuid, Pg>::from_sql(v)?;
        json::write_uuid(out, &id);
        Ok(())
    }

    pub fn text(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        json::write_str(out, super::text(v)?);
        Ok(())
    }

    pub fn int(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        let n: i16 = FromSql::<SmallInt, Pg>::from_sql(v)?;
        json::write_int(out, n.into());
        Ok(())
    }

    pub fn time(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        let t: DateTime<Utc> = FromSql::<Timestamptz, Pg>::from_sql(v)?;
        json::write_time(out, &t);
        Ok(())
    }

    pub fn sections(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        match v.as_bytes().split_first() {
            // jsonb's binary format: a version byte (1), then the JSON text.
            Some((1, stored)) => Ok(json::write_sections(out, std::str::from_utf8(stored)?)?),
            _ => Err("unsupported jsonb format".into()),
        }
    }

    pub fn text_array(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        let v = some(v)?;
        write_text_array(out, v.as_bytes())
    }

    pub fn nullable_text(out: &mut Vec<u8>, v: Option<PgValue<'_>>) -> deserialize::Result<()> {
        match v {
            Some(_) => text(out, v),
            None => {
                out.extend_from_slice(b"null");
                Ok(())
            }
        }
    }

    fn some(v: Option<PgValue<'_>>) -> deserialize::Result<PgValue<'_>> {
        v.ok_or_else(|| Box::new(diesel::result::UnexpectedNullError) as _)
    }
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

/// A row of the first page of a text search (`super::lists`): the signal with its rank, then how
/// many candidates the search ranked and the oldest of them (its time and id).
pub struct SearchRow {
    pub signal: SignalJson,
    pub candidates: i64,
    pub oldest: Option<Window>,
}

pub type SearchRowTypes = (
    RankedColumnTypes,
    (BigInt, Nullable<Timestamptz>, Nullable<SqlUuid>),
);

impl FromSqlRow<SearchRowTypes, Pg> for SearchRow {
    fn build_from_row<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
        let after = ALL_FIELDS.len() + 1;
        let time = row.get_value::<Nullable<Timestamptz>, Option<DateTime<Utc>>, _>(after + 1)?;
        let id = row.get_value::<Nullable<SqlUuid>, Option<Uuid>, _>(after + 2)?;
        Ok(SearchRow {
            signal: SignalJson::decode(row)?,
            candidates: row.get_value::<BigInt, i64, _>(after)?,
            oldest: time.zip(id),
        })
    }
}

impl FromSqlRow<RankedColumnTypes, Pg> for SignalJson {
    fn build_from_row<'a>(row: &impl Row<'a, Pg>) -> deserialize::Result<Self> {
        SignalJson::decode(row)
    }
}
