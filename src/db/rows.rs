//! The stored row of a signal, generated from the one field table (`signal_fields!`): the
//! representation's fields, in their order, plus the key that created it.

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::pg::{Pg, PgValue};
use diesel::sql_types::Jsonb;
use diesel::{Queryable, Selectable};
use uuid::Uuid;

use super::schema::signals;
use crate::domain::signal::{Section, Signal};

/// What a field's Rust type is read as from its column (most types as themselves).
pub trait Stored {
    type As;
}

macro_rules! stored_as_itself {
    ($($ty:ty),*) => { $(impl Stored for $ty { type As = $ty; })* };
}
stored_as_itself!(
    Uuid,
    String,
    i16,
    chrono::DateTime<chrono::Utc>,
    Vec<String>,
    Option<String>
);

impl Stored for Vec<Section> {
    type As = Sections;
}

/// The `sections` column, decoded straight from jsonb into sections (no intermediate
/// `serde_json::Value`).
#[derive(Debug, Clone, Default, FromSqlRow)]
pub struct Sections(pub Vec<Section>);

impl From<Sections> for Vec<Section> {
    fn from(s: Sections) -> Self {
        s.0
    }
}

impl FromSql<Jsonb, Pg> for Sections {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        // jsonb's binary format: a version byte (1), then the JSON text.
        match value.as_bytes().split_first() {
            Some((1, json)) => Ok(Sections(serde_json::from_slice(json)?)),
            _ => Err("unsupported jsonb format".into()),
        }
    }
}

macro_rules! signal_row {
    ($( $(#[$meta:meta])* $name:ident : $ty:ty => $kind:ident, )*) => {
        /// A signal as stored: its fields and the key that created it.
        #[derive(Debug, Clone, Queryable, Selectable)]
        #[diesel(table_name = signals, check_for_backend(Pg))]
        pub struct SignalRow {
            $( #[diesel(deserialize_as = <$ty as Stored>::As)] pub $name: $ty, )*
            pub created_by: Option<Uuid>,
        }

        impl From<SignalRow> for Signal {
            fn from(row: SignalRow) -> Signal {
                Signal { $( $name: row.$name, )* }
            }
        }
    };
}

crate::signal_fields!(signal_row);
