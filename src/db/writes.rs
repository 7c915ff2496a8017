//! Writes of signals: insert, replace, delete and batches, inside the caller's transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::rows::SignalRow;
use super::schema::signals;
use crate::domain::input::SignalInput;
use crate::domain::query::{case_key, OnConflict};
use crate::domain::signal::{path_id, slug_from_title, SignalRef};

async fn find_slug_for_update(
    conn: &mut AsyncPgConnection,
    slug: &str,
) -> diesel::QueryResult<Option<SignalRow>> {
    signals::table
        .select(SignalRow::as_select())
        .filter(signals::slug.eq(slug))
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The row, locked until the end of the caller's transaction.
pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    r: &SignalRef,
) -> diesel::QueryResult<Option<SignalRow>> {
    match r {
        SignalRef::Id(id) => signals::table
            .select(SignalRow::as_select())
            .filter(signals::id.eq(id))
            .for_update()
            .first(conn)
            .await
            .optional(),
        SignalRef::Slug(slug) => find_slug_for_update(conn, slug).await,
    }
}

/// Why an insert did not happen.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    #[error("the slug {0:?} is taken")]
    SlugTaken(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Inserts a signal. An explicit slug that is taken is an error; a slug derived from the title
/// gets a suffix until it is unique.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    draft: &SignalInput,
    created_by: Option<Uuid>,
) -> Result<SignalRow, InsertError> {
    insert_avoiding(conn, draft, created_by, &[]).await
}

/// `insert`, with derived slugs also kept clear of `reserved` (the explicit slugs of the rest of
/// a batch, so an item's derived slug never takes a later item's slug).
async fn insert_avoiding(
    conn: &mut AsyncPgConnection,
    draft: &SignalInput,
    created_by: Option<Uuid>,
    reserved: &[&str],
) -> Result<SignalRow, InsertError> {
    let now = Utc::now();
    let base = draft
        .slug
        .clone()
        .unwrap_or_else(|| slug_from_title(&draft.title));
    for attempt in 0.. {
        let slug = match attempt {
            0 => base.clone(),
            _ if draft.slug.is_some() => return Err(InsertError::SlugTaken(base)),
            _ => derived_slug(&base, attempt),
        };
        if draft.slug.is_none() && reserved.contains(&slug.as_str()) {
            continue;
        }
        let inserted = diesel::insert_into(signals::table)
            .values((
                signals::id.eq(Uuid::now_v7()),
                signals::slug.eq(&slug),
                fields(draft, now),
                signals::created_by.eq(created_by),
                signals::created_at.eq(now),
                signals::updated_at.eq(now),
            ))
            .on_conflict(signals::slug)
            .do_nothing()
            .returning(SignalRow::as_returning())
            .get_result(conn)
            .await
            .optional()?;
        if let Some(row) = inserted {
            return Ok(row);
        }
    }
    unreachable!("the attempt loop only ends by returning")
}

/// Rounds of bulk inserts a batch gives its derived slugs before trying the rest one by one.
const DERIVED_ROUNDS: usize = 6;

/// Tries of `derived_slug` before the random suffix: the title's own slug, `-2`, `-3`, `-4`.
const NUMBERED_TRIES: u32 = 4;

/// The slug a draft without one tries at this attempt (0 is the title's own): `-2` to `-4`, then
/// a random suffix, which is as good as unique. Never a UUID (a path with one names an id): a
/// title of four groups of hex digits, with the suffix, would be one.
fn derived_slug(base: &str, attempt: u32) -> String {
    match attempt {
        0 => base.to_owned(),
        1..NUMBERED_TRIES => format!("{base}-{}", attempt + 1),
        _ => {
            let slug = format!("{base}-{}", &Uuid::now_v7().simple().to_string()[20..]);
            match path_id(&slug) {
                Some(_) => format!("{slug}-signal"),
                None => slug,
            }
        }
    }
}

/// The slugs a draft without one may get before a random suffix: the title's own (`base`), then
/// `-2` to `-4`, which a draft with one of them as its own slug contends for too.
pub(crate) fn numbered_slugs(base: &str) -> impl Iterator<Item = String> + '_ {
    (0..NUMBERED_TRIES).map(move |a| derived_slug(base, a))
}

/// Whether writing `draft` over `current` would change nothing a client can read.
fn unchanged(current: &SignalRow, draft: &SignalInput) -> bool {
    draft.slug.as_ref().is_none_or(|s| *s == current.slug)
        && draft.title == current.title
        && draft.summary == current.summary
        && draft.body == current.body
        && draft.score == current.score
        && draft.category == current.category
        && draft.published_at.is_none_or(|t| t == current.published_at)
        && draft.sections == current.sections
        && draft.tags == current.tags
        && draft.source_url == current.source_url
}

/// Replaces the client fields of a signal; a missing slug or publication time keeps the current
/// one. A replacement that changes nothing writes nothing: the signal keeps its `updated_at`
/// (so its ETag and the feeds' modification times), and the change log gets no change.
pub async fn replace(
    conn: &mut AsyncPgConnection,
    current: &SignalRow,
    draft: &SignalInput,
) -> diesel::QueryResult<SignalRow> {
    if unchanged(current, draft) {
        return Ok(current.clone());
    }
    let slug = draft.slug.as_deref().unwrap_or(&current.slug);
    let published_at = draft.published_at.unwrap_or(current.published_at);
    diesel::update(signals::table.filter(signals::id.eq(current.id)))
        .set((
            signals::slug.eq(slug),
            fields(draft, published_at),
            // Strictly later than the current version: ETags are derived from it.
            signals::updated_at
                .eq(Utc::now().max(current.updated_at + chrono::Duration::microseconds(1))),
        ))
        .returning(SignalRow::as_returning())
        .get_result(conn)
        .await
}

type Fields<'a> = (
    diesel::dsl::Eq<signals::category_key, String>,
    diesel::dsl::Eq<signals::tag_keys, Vec<String>>,
    diesel::dsl::Eq<signals::title, &'a str>,
    diesel::dsl::Eq<signals::summary, &'a str>,
    diesel::dsl::Eq<signals::body, &'a str>,
    diesel::dsl::Eq<signals::score, i16>,
    diesel::dsl::Eq<signals::category, &'a str>,
    diesel::dsl::Eq<signals::published_at, DateTime<Utc>>,
    diesel::dsl::Eq<signals::sections, serde_json::Value>,
    diesel::dsl::Eq<signals::tags, &'a [String]>,
    diesel::dsl::Eq<signals::source_url, Option<&'a str>>,
);

/// The client-set columns of a draft; `default_published_at` when the draft has no time.
fn fields(draft: &SignalInput, default_published_at: DateTime<Utc>) -> Fields<'_> {
    (
        signals::category_key.eq(case_key(&draft.category)),
        signals::tag_keys.eq(draft.tags.iter().map(|t| case_key(t)).collect::<Vec<_>>()),
        signals::title.eq(draft.title.as_str()),
        signals::summary.eq(draft.summary.as_str()),
        signals::body.eq(draft.body.as_str()),
        signals::score.eq(draft.score),
        signals::category.eq(draft.category.as_str()),
        signals::published_at.eq(draft.published_at.unwrap_or(default_published_at)),
        signals::sections.eq(serde_json::to_value(&draft.sections).unwrap_or_default()),
        signals::tags.eq(draft.tags.as_slice()),
        signals::source_url.eq(draft.source_url.as_deref()),
    )
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> diesel::QueryResult<bool> {
    let n = diesel::delete(signals::table.filter(signals::id.eq(id)))
        .execute(conn)
        .await?;
    Ok(n > 0)
}

/// What happened to one item of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    Created(Uuid),
    Updated(Uuid),
    Skipped(Uuid),
}

impl BatchOutcome {
    pub fn id(self) -> Uuid {
        match self {
            BatchOutcome::Created(id) | BatchOutcome::Updated(id) | BatchOutcome::Skipped(id) => id,
        }
    }
}

/// Why a batch was rejected as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Items (by index) whose slug is taken, with `on_conflict = error`.
    #[error("slugs taken")]
    Conflict(Vec<usize>),
    /// Items (by index) that would update a signal this key may not change.
    #[error("not allowed")]
    Forbidden(Vec<usize>),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Writes a batch, item by item in input order, inside the caller's transaction: any error
/// leaves nothing written. `may_change` says whether the caller may update a signal created by
/// the given key.
pub async fn write_batch(
    conn: &mut AsyncPgConnection,
    drafts: &[SignalInput],
    on_conflict: OnConflict,
    created_by: Option<Uuid>,
    may_change: impl Fn(Option<Uuid>) -> bool,
) -> Result<Vec<BatchOutcome>, BatchError> {
    let slugs: Vec<&str> = drafts.iter().filter_map(|d| d.slug.as_deref()).collect();
    // Locked, so a concurrent batch cannot change them between this check and the writes.
    let existing: Vec<SignalRow> = signals::table
        .select(SignalRow::as_select())
        .filter(signals::slug.eq_any(&slugs))
        .for_update()
        .load(conn)
        .await?;
    let existing_for = |d: &SignalInput| {
        d.slug
            .as_deref()
            .and_then(|slug| existing.iter().find(|row| row.slug == slug))
    };
    let taken: Vec<usize> = (0..drafts.len())
        .filter(|&i| existing_for(&drafts[i]).is_some())
        .collect();
    // With `error`, every item that meets a signal is named at once: one whose slug is taken,
    // and one whose slug an earlier item of the batch names (as writing them in turn would
    // meet the signal the earlier one wrote).
    let mut named: HashSet<&str> = HashSet::new();
    let conflicts: Vec<usize> = (drafts.iter().enumerate())
        .filter(|(_, d)| {
            let repeated = d.slug.as_deref().is_some_and(|slug| !named.insert(slug));
            repeated || existing_for(d).is_some()
        })
        .map(|(i, _)| i)
        .collect();
    match on_conflict {
        OnConflict::Error if !conflicts.is_empty() => return Err(BatchError::Conflict(conflicts)),
        OnConflict::Update => {
            let forbidden: Vec<usize> = taken
                .iter()
                .copied()
                .filter(|&i| {
                    existing_for(&drafts[i]).is_some_and(|row| !may_change(row.created_by))
                })
                .collect();
            if !forbidden.is_empty() {
                return Err(BatchError::Forbidden(forbidden));
            }
        }
        _ => {}
    }
    let mut outcomes: Vec<Option<BatchOutcome>> = vec![None; drafts.len()];
    // New signals go in with one statement per round. An explicit slug goes in the first round,
    // unless another item names it too. A derived slug takes the next try of `derived_slug` that
    // no other slug of the batch has (taken or tried), and a draft whose slug the database already
    // has tries again in the next round. What is left after that (an explicit slug taken, or named
    // twice), one by one, in order, below. A batch of 1,000 items with one title, or a batch sent
    // again without an idempotency key, took thousands of round trips before.
    // Explicit slugs that more than one item names: (first item, last item) of each.
    let mut groups: HashMap<&str, (usize, usize)> = HashMap::new();
    for (index, slug) in drafts
        .iter()
        .enumerate()
        .filter_map(|(i, d)| Some((i, d.slug.as_deref()?)))
    {
        groups.entry(slug).or_insert((index, index)).1 = index;
    }
    groups.retain(|_, (first, last)| first != last);
    let mut used: HashSet<String> = slugs.iter().map(|s| (*s).to_owned()).collect();
    let new = (0..drafts.len()).filter(|&i| existing_for(&drafts[i]).is_none());
    let mut round: Vec<(usize, String)> = new
        .clone()
        .filter_map(|i| Some((i, drafts[i].slug.clone()?)))
        .filter(|(_, slug)| !groups.contains_key(slug.as_str()))
        .collect();
    let mut derived: Vec<(usize, String, u32)> = new
        .filter(|&i| drafts[i].slug.is_none())
        .map(|i| (i, slug_from_title(&drafts[i].title), 0))
        .collect();
    // The numbered tries the database has already, so the earliest items get the lowest free
    // numbers, as writing them in turn would give them.
    let tries: HashSet<String> = (derived.iter())
        .flat_map(|(_, base, _)| numbered_slugs(base))
        .collect();
    if !tries.is_empty() {
        let tries: Vec<String> = tries.into_iter().collect();
        let taken: Vec<String> = signals::table
            .select(signals::slug)
            .filter(signals::slug.eq_any(&tries))
            .load(conn)
            .await?;
        used.extend(taken);
    }
    for _ in 0..DERIVED_ROUNDS {
        for (index, base, attempt) in &mut derived {
            let slug = (*attempt..)
                .map(|a| (a, derived_slug(base, a)))
                .find(|(_, slug)| !used.contains(slug));
            let (a, slug) = slug.expect("random suffixes end the search");
            *attempt = a + 1;
            used.insert(slug.clone());
            round.push((*index, slug));
        }
        for (index, id) in insert_many(conn, drafts, &round, created_by).await? {
            outcomes[index] = Some(BatchOutcome::Created(id));
        }
        round.clear();
        derived.retain(|(index, _, _)| outcomes[*index].is_none());
        if derived.is_empty() {
            break;
        }
    }
    // Items that name a slug another item also names: with `skip` the first decides and the rest
    // are skipped; with `update` only the last is written (with the group's latest publication
    // time), which leaves the signal as writing each in turn would, in one statement, and one
    // change instead of one per item.
    fn in_group<'a>(
        drafts: &'a [SignalInput],
        slug: &'a str,
    ) -> impl Iterator<Item = (usize, &'a SignalInput)> {
        (drafts.iter().enumerate()).filter(move |(_, d)| d.slug.as_deref() == Some(slug))
    }
    let mut merged;
    for (index, mut draft) in drafts.iter().enumerate() {
        if outcomes[index].is_some() {
            continue;
        }
        let group = draft
            .slug
            .as_deref()
            .and_then(|s| Some((s, *groups.get(s)?)));
        match (group, on_conflict) {
            (Some((_, (_, last))), OnConflict::Update) if index != last => continue,
            (Some((_, (first, _))), OnConflict::Skip) if index != first => continue,
            (Some((slug, _)), OnConflict::Update) => {
                let published_at = in_group(drafts, slug)
                    .filter_map(|(_, d)| d.published_at)
                    .last();
                merged = SignalInput {
                    published_at,
                    ..draft.clone()
                };
                draft = &merged;
            }
            _ => {}
        }
        let outcome = match (existing_for(draft), on_conflict) {
            (Some(row), OnConflict::Skip) => BatchOutcome::Skipped(row.id),
            (Some(row), _) => BatchOutcome::Updated(replace(conn, row, draft).await?.id),
            (None, _) => match insert_avoiding(conn, draft, created_by, &slugs).await {
                Ok(row) => BatchOutcome::Created(row.id),
                // Taken by a signal another transaction committed after the check above.
                Err(InsertError::SlugTaken(slug)) => {
                    let row = match on_conflict {
                        OnConflict::Error => None,
                        _ => find_slug_for_update(conn, &slug).await?,
                    };
                    match (row, on_conflict) {
                        (Some(row), OnConflict::Skip) => BatchOutcome::Skipped(row.id),
                        (Some(row), OnConflict::Update) if may_change(row.created_by) => {
                            BatchOutcome::Updated(replace(conn, &row, draft).await?.id)
                        }
                        (Some(_), OnConflict::Update) => {
                            return Err(BatchError::Forbidden(vec![index]))
                        }
                        _ => return Err(BatchError::Conflict(vec![index])),
                    }
                }
                Err(InsertError::Query(e)) => return Err(e.into()),
            },
        };
        outcomes[index] = Some(outcome);
    }
    for (slug, (first, last)) in groups {
        let decided = match on_conflict {
            OnConflict::Update => last,
            _ => first,
        };
        let Some(outcome) = outcomes[decided] else {
            continue;
        };
        for (index, _) in in_group(drafts, slug) {
            outcomes[index] = Some(match (on_conflict, outcome) {
                _ if index == first => outcome,
                (OnConflict::Update, o) => BatchOutcome::Updated(o.id()),
                (_, o) => BatchOutcome::Skipped(o.id()),
            });
        }
    }
    Ok(outcomes.into_iter().flatten().collect())
}

/// Inserts the drafts at these indexes with these slugs in one statement; a slug that turns out
/// taken (by another signal, or a transaction that committed meanwhile) leaves its draft out.
/// Returns (index, id) of the inserted ones.
async fn insert_many(
    conn: &mut AsyncPgConnection,
    drafts: &[SignalInput],
    chosen: &[(usize, String)],
    created_by: Option<Uuid>,
) -> diesel::QueryResult<Vec<(usize, Uuid)>> {
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    // Ids in input order (signals of one time list in the order they were sent); rows in slug
    // order, so two batches that share slugs wait for each other's rows in the same order
    // instead of deadlocking.
    let ids: Vec<Uuid> = chosen.iter().map(|_| Uuid::now_v7()).collect();
    let mut in_slug_order: Vec<(&(usize, String), &Uuid)> = chosen.iter().zip(&ids).collect();
    in_slug_order.sort_by(|a, b| a.0 .1.cmp(&b.0 .1));
    let rows: Vec<_> = in_slug_order
        .into_iter()
        .map(|((index, slug), id)| {
            (
                signals::id.eq(*id),
                signals::slug.eq(slug.as_str()),
                fields(&drafts[*index], now),
                signals::created_by.eq(created_by),
                signals::created_at.eq(now),
                signals::updated_at.eq(now),
            )
        })
        .collect();
    let inserted: Vec<Uuid> = diesel::insert_into(signals::table)
        .values(rows)
        .on_conflict(signals::slug)
        .do_nothing()
        .returning(signals::id)
        .load(conn)
        .await?;
    Ok(chosen
        .iter()
        .zip(ids)
        .filter(|(_, id)| inserted.contains(id))
        .map(|((index, _), id)| (*index, id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_slug_is_never_a_uuid() {
        let base = slug_from_title("01234567 89ab cdef 0123");
        assert_eq!(base, "01234567-89ab-cdef-0123");
        for attempt in 0..10 {
            let slug = derived_slug(&base, attempt);
            assert!(path_id(&slug).is_none(), "{slug}");
            assert!(slug.starts_with(&base), "{slug}");
        }
    }
}
