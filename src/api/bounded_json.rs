//! JSON bodies parsed with a budget: at most [`MAX_VALUES`] values (every string, number,
//! array, object...). A body within the byte limit can still be millions of tiny values (16 MiB
//! of `0,` is eight million numbers, a quarter of a gigabyte as `serde_json::Value`s); with the
//! budget, parsing stops as soon as it is spent, so memory stays near the body's own size.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Most values one body may hold: a full batch (1,000 signals with 20 sections and 20 tags
/// each) holds about 100,000.
pub const MAX_VALUES: usize = 250_000;

/// Why a body was not parsed.
pub enum Refused {
    /// Not JSON: serde_json's message.
    Invalid(String),
    /// More values than the budget.
    TooManyValues,
}

const SPENT: &str = "the budget of values is spent";

/// Parses `bytes` as JSON, spending at most `budget` values.
pub fn parse(bytes: &[u8], budget: usize) -> Result<Value, Refused> {
    let left = Cell::new(budget);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Node(&left)
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    parsed.map_err(
        |e| match left.get() == 0 && e.to_string().starts_with(SPENT) {
            true => Refused::TooManyValues,
            false => Refused::Invalid(e.to_string()),
        },
    )
}

struct Node<'b>(&'b Cell<usize>);

impl Node<'_> {
    fn spend<E: Error>(&self) -> Result<(), E> {
        match self.0.get() {
            0 => Err(E::custom(SPENT)),
            n => {
                self.0.set(n - 1);
                Ok(())
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Value, E> {
        self.spend()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: Error>(self) -> Result<Value, E> {
        self.spend()?;
        Ok(Value::Null)
    }

    fn visit_none<E: Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Node(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.spend()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.spend()?;
            let value = map.next_value_seed(Node(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_parse_as_serde_json_does_within_the_budget() {
        let text = r#"{"a": [1, -2, 3.5, true, null, "x"], "b": {"c": "é\u0000"}}"#;
        let parsed = parse(text.as_bytes(), 100).ok().unwrap();
        assert_eq!(parsed, serde_json::from_str::<Value>(text).unwrap());
        assert!(matches!(
            parse(text.as_bytes(), 5),
            Err(Refused::TooManyValues)
        ));
        assert!(matches!(parse(b"[1, 2", 100), Err(Refused::Invalid(_))));
        assert!(matches!(parse(b"{} x", 100), Err(Refused::Invalid(_))));
        let million = format!("[{}0]", "0,".repeat(1_000_000));
        assert!(matches!(
            parse(million.as_bytes(), MAX_VALUES),
            Err(Refused::TooManyValues)
        ));
    }
}
