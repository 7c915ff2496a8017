//! The opaque, signed pagination cursor: where a page ended, bound to the filters and sort of
//! the query that made it, and signed with a key shared by every instance on one database.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::query::{After, ListQuery, Sort};
use super::FieldError;

/// Bytes of the HMAC-SHA256 tag a cursor carries.
const TAG_LEN: usize = 16;

impl ListQuery {
    /// The position the cursor points after, if it was made by this same query.
    pub fn after(&self, key: &[u8]) -> Result<Option<After>, FieldError> {
        let Some(token) = &self.cursor else {
            return Ok(None);
        };
        let bad = || FieldError::new("cursor", "is not a cursor this service issued");
        let (payload, tag) = token.split_once('.').ok_or_else(bad)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| bad())?;
        if tag.len() != TAG_LEN {
            return Err(bad());
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|_| bad())?;
        mac.update(payload.as_bytes());
        mac.verify_truncated_left(&tag).map_err(|_| bad())?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        let cursor: CursorPayload = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if cursor.q != self.fingerprint() {
            return Err(FieldError::new(
                "cursor",
                "belongs to a query with other filters or sort; start again without a cursor",
            ));
        }
        let after = match (self.sort, cursor.k) {
            (Sort::PublishedDesc | Sort::PublishedAsc, Key::Published(t, id)) => {
                After::Published(t, id)
            }
            (Sort::ScoreDesc | Sort::ScoreAsc, Key::Score(s, t, id)) => After::Score(s, t, id),
            (Sort::Relevance, Key::Relevance(r, t, id)) => After::Relevance(r, t, id, None),
            // Past the ranked window of a search, its older matches go on by time.
            (Sort::Relevance, Key::Published(t, id)) => After::Published(t, id),
            (Sort::Relevance, Key::RelevanceIn(r, t, id, wt, wid)) => {
                After::Relevance(r, t, id, Some((wt, wid)))
            }
            _ => return Err(bad()),
        };
        Ok(Some(after))
    }

    /// A cursor for the page after `after`, signed and bound to this query's filters and sort.
    pub fn cursor_for(&self, after: &After, key: &[u8]) -> String {
        let k = match after {
            After::Published(t, id) => Key::Published(*t, *id),
            After::Score(s, t, id) => Key::Score(*s, *t, *id),
            After::Relevance(r, t, id, None) => Key::Relevance(*r, *t, *id),
            After::Relevance(r, t, id, Some((wt, wid))) => Key::RelevanceIn(*r, *t, *id, *wt, *wid),
        };
        let payload = CursorPayload {
            q: self.fingerprint(),
            k,
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap_or_default());
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(payload.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{payload}.{}", URL_SAFE_NO_PAD.encode(&tag[..TAG_LEN]))
    }

    /// Identifies the filters and sort (not the page size) a cursor was made for.
    fn fingerprint(&self) -> String {
        let digest = Sha256::digest(format!("{:?}|{:?}", self.filter, self.sort));
        URL_SAFE_NO_PAD.encode(&digest[..12])
    }
}

#[derive(Serialize, Deserialize)]
struct CursorPayload {
    q: String,
    k: Key,
}

#[derive(Serialize, Deserialize)]
enum Key {
    #[serde(rename = "p")]
    Published(DateTime<Utc>, Uuid),
    #[serde(rename = "s")]
    Score(i16, DateTime<Utc>, Uuid),
    #[serde(rename = "r")]
    Relevance(f32, DateTime<Utc>, Uuid),
    /// Relevance within the window of ranked matches (its oldest time and id).
    #[serde(rename = "w")]
    RelevanceIn(f32, DateTime<Utc>, Uuid, DateTime<Utc>, Uuid),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::query::CURSOR_PATTERN;

    const KEY: &[u8] = b"test key";

    fn after() -> After {
        After::Published(Utc::now(), Uuid::now_v7())
    }

    #[test]
    fn a_cursor_round_trips_only_for_its_own_query() {
        let q = ListQuery::parse("min_score=7").unwrap();
        let a = after();
        let cursor = q.cursor_for(&a, KEY);
        let mut next = ListQuery::parse(&format!("min_score=7&limit=50&cursor={cursor}")).unwrap();
        assert_eq!(next.after(KEY).unwrap(), Some(a));
        next.filter.min_score = Some(6);
        assert!(next.after(KEY).is_err());
        let sorted = ListQuery::parse(&format!("min_score=7&sort=-score&cursor={cursor}")).unwrap();
        assert!(sorted.after(KEY).is_err());
    }

    #[test]
    fn issued_cursors_have_the_documented_shape() {
        let q = ListQuery::parse("q=deepseek").unwrap();
        let cursor = q.cursor_for(
            &After::Relevance(
                0.5,
                Utc::now(),
                Uuid::now_v7(),
                Some((Utc::now(), Uuid::now_v7())),
            ),
            KEY,
        );
        let pattern = regex::Regex::new(CURSOR_PATTERN).unwrap();
        assert!(pattern.is_match(&cursor), "{cursor}");
    }

    #[test]
    fn tampered_or_garbage_cursors_are_rejected() {
        let q = ListQuery::parse("").unwrap();
        let cursor = q.cursor_for(&after(), KEY);
        let (payload, tag) = cursor.split_once('.').unwrap();
        let mut flipped = payload.as_bytes().to_vec();
        flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
        let tampered = format!("{}.{tag}", String::from_utf8(flipped).unwrap());
        for bad in [
            tampered.as_str(),
            "garbage",
            "a.b",
            "",
            &cursor[..cursor.len() - 2],
        ] {
            let q = ListQuery {
                cursor: Some(bad.to_owned()),
                ..q.clone()
            };
            assert!(q.after(KEY).is_err(), "{bad}");
        }
        let other_key = ListQuery {
            cursor: Some(cursor),
            ..q
        };
        assert!(other_key.after(b"another key").is_err());
    }
}
