//! `signals import FILE.jsonl`: streams one JSON signal a line into the database in batches,
//! through the batch endpoint's validation (`parse_item`) and write (`write_batch`), each batch
//! in its own transaction. A bad line stops the import: the batches before it stay, nothing of
//! its own batch is written, and rerunning with `--on-conflict skip` resumes (for lines that
//! carry a slug: lines without one would get new, suffixed slugs).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::Path;
use std::time::Instant;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::stream::{FuturesUnordered, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::db::writes::{write_batch, BatchError, BatchOutcome};
use crate::domain::input::{parse_item, SignalInput};
use crate::domain::query::OnConflict;
use crate::Fatal;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub created: usize,
    pub updated: usize,
    pub skipped: usize,
}

/// A batch read and checked, with the line number of each item, and how far into the input it
/// ends.
struct Batch {
    items: Vec<SignalInput>,
    lines: Vec<usize>,
    bytes: u64,
    /// Written once already, and failed.
    again: bool,
}

/// Imports `path` (`-` for standard input) over `conns`; the summary goes to standard error.
///
/// Reading and checking runs on a thread of its own, ahead of the writing, and each connection
/// writes a batch at a time, so with two connections the database builds two batches' search
/// documents at once (the change log still takes its positions one transaction at a time).
/// A bad line stops the import once the batches before it are written; nothing of its own
/// batch or after it is. A batch the database refuses (a taken slug) stops it too: nothing of
/// that batch is written, and the message names the later batches that were written while it
/// ran, which `--on-conflict skip` passes over on a rerun.
pub async fn run(
    conns: Vec<AsyncPgConnection>,
    path: &Path,
    on_conflict: OnConflict,
    batch_size: usize,
) -> Result<Totals, Fatal> {
    let (reader, size): (Box<dyn BufRead + Send>, Option<u64>) = if path == Path::new("-") {
        (Box::new(BufReader::new(std::io::stdin())), None)
    } else {
        let file =
            File::open(path).map_err(|e| Fatal(format!("cannot open {}: {e}", path.display())))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(BufReader::with_capacity(1 << 20, file)), size)
    };
    let progress = Progress::new(size);
    let started = Instant::now();
    let mut totals = Totals::default();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch, Fatal>>(conns.len() + 1);
    let parser = std::thread::spawn(move || read_batches(reader, batch_size, tx));
    let mut idle = conns;
    let mut writing = FuturesUnordered::new();
    // What each batch being written names: its slugs, and the titles of its signals without
    // one (their slugs are derived from them).
    let mut in_flight: Vec<(usize, HashSet<String>)> = Vec::new();
    // The next batch, read and waiting for a connection, or for the batches it shares a name
    // with; and a batch the database failed once, to be written again alone.
    let mut next: Option<Batch> = None;
    let mut again: Option<(Batch, Fatal)> = None;
    let mut bytes = 0;
    // The earliest error (a bad line, or a batch the database refused), by the first line of
    // what was not written, and the lines of every batch that was.
    let mut stop: Option<(Fatal, usize)> = None;
    let mut written_lines: Vec<(usize, usize)> = Vec::new();
    let mut read_all = false;
    loop {
        if let Some((_, stop_line)) = &stop {
            next = None;
            // A batch to write again that comes after the stop is not written after all; one
            // before it (a bad line was read while it failed beside another) still is.
            if again.as_ref().is_some_and(|(b, _)| b.lines[0] > *stop_line) {
                again = None;
            }
        }
        if writing.is_empty() {
            if let Some((batch, _)) = again.take() {
                in_flight.push((batch.lines[0], names(&batch.items)));
                let conn = idle.pop().expect("every connection idle");
                writing.push(write(conn, batch, on_conflict));
                continue;
            }
        }
        if again.is_none() && !idle.is_empty() {
            if let Some(batch) = next.take() {
                let names = names(&batch.items);
                if in_flight.iter().all(|(_, other)| other.is_disjoint(&names)) {
                    in_flight.push((batch.lines[0], names));
                    let conn = idle.pop().expect("an idle connection");
                    writing.push(write(conn, batch, on_conflict));
                    continue;
                }
                next = Some(batch);
            }
        }
        let can_read = stop.is_none() && !read_all && next.is_none() && again.is_none();
        if !can_read && writing.is_empty() {
            break;
        }
        // Reading goes on while batches are written, and a batch written is committed at once
        // (its transaction holds the change log's lock until then).
        let done = tokio::select! {
            got = rx.recv(), if can_read => {
                match got {
                    Some(Ok(batch)) => next = Some(batch),
                    // Every batch before the bad line was sent.
                    Some(Err(bad_line)) => stop = Some((bad_line, usize::MAX)),
                    None => read_all = true,
                }
                continue;
            }
            Some(done) = writing.next(), if !writing.is_empty() => done,
        };
        let (conn, mut batch, written) = done;
        idle.push(conn);
        let (first, last) = (batch.lines[0], batch.lines[batch.lines.len() - 1]);
        in_flight.retain(|(line, _)| *line != first);
        match written {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        BatchOutcome::Created(_) => totals.created += 1,
                        BatchOutcome::Updated(_) => totals.updated += 1,
                        BatchOutcome::Skipped(_) => totals.skipped += 1,
                    }
                }
                written_lines.push((first, last));
                bytes = bytes.max(batch.bytes);
                progress.update(bytes, &totals, started);
            }
            // A database error beside another batch (two batches can deadlock on the change
            // log's lock and a derived slug): once more, alone.
            Err(e @ BatchError::Query(_))
                if !batch.again && stop.as_ref().is_none_or(|(_, line)| first < *line) =>
            {
                batch.again = true;
                let error = refused(e, &batch.lines);
                again = Some((batch, error));
            }
            Err(e) => match &stop {
                Some((_, earlier)) if *earlier < first => {}
                _ => stop = Some((refused(e, &batch.lines), first)),
            },
        }
    }
    // The channel closed when every line was read; after an error the reading thread may
    // still wait for input (standard input), and ends when it next sends.
    drop(rx);
    if read_all {
        let _ = parser.join();
    }
    progress.finish(bytes, &totals, started);
    if let Some((Fatal(message), refused)) = stop {
        written_lines.sort_unstable();
        let after: Vec<String> = written_lines
            .iter()
            .filter(|(first, _)| *first > refused)
            .map(|(first, last)| format!("{first}..{last}"))
            .collect();
        return Err(Fatal(match after.is_empty() {
            true => message,
            false => format!(
                "{message}; lines {} after it were written meanwhile",
                after.join(", ")
            ),
        }));
    }
    let seconds = started.elapsed().as_secs_f64();
    let rows = totals.created + totals.updated + totals.skipped;
    eprintln!(
        "imported {rows} signals in {seconds:.1} s ({:.0} rows/s): {} created, {} updated, {} skipped",
        rows as f64 / seconds.max(1e-9),
        totals.created,
        totals.updated,
        totals.skipped
    );
    Ok(totals)
}

/// Reads lines into checked batches and sends them on, in order; a bad line is sent as the
/// error that ends the import (after the batches before it).
fn read_batches(
    reader: Box<dyn BufRead + Send>,
    batch_size: usize,
    tx: tokio::sync::mpsc::Sender<Result<Batch, Fatal>>,
) {
    let mut batch = Batch {
        items: Vec::with_capacity(batch_size),
        lines: Vec::with_capacity(batch_size),
        bytes: 0,
        again: false,
    };
    let mut first_line = 1;
    let mut line_no = 0;
    let mut bytes = 0u64;
    for line in reader.lines() {
        line_no += 1;
        let item = line
            .map_err(|e| Fatal(format!("line {line_no}: cannot read: {e}")))
            .and_then(|line| {
                bytes += line.len() as u64 + 1;
                if line.trim().is_empty() {
                    return Ok(None);
                }
                let value: Value = serde_json::from_str(&line).map_err(|e| {
                    Fatal(format!(
                        "line {line_no}: not valid JSON: {e}; nothing of lines \
                         {first_line}..{line_no} was written"
                    ))
                })?;
                parse_item(&value).map(Some).map_err(|errors| {
                    let what: Vec<String> = errors
                        .iter()
                        .map(|e| format!("{} {}", e.field, e.message))
                        .collect();
                    Fatal(format!(
                        "line {line_no}: {}; nothing of lines {first_line}..{line_no} was written",
                        what.join(", ")
                    ))
                })
            });
        match item {
            Ok(None) => continue,
            Ok(Some(draft)) => {
                batch.items.push(draft);
                batch.lines.push(line_no);
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        if batch.items.len() >= batch_size {
            batch.bytes = bytes;
            let full = std::mem::replace(
                &mut batch,
                Batch {
                    items: Vec::with_capacity(batch_size),
                    lines: Vec::with_capacity(batch_size),
                    bytes: 0,
                    again: false,
                },
            );
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
            first_line = line_no + 1;
        }
    }
    if !batch.items.is_empty() {
        batch.bytes = bytes;
        let _ = tx.blocking_send(Ok(batch));
    }
}

/// One batch, in a transaction of its own on `conn`; gives both back with the outcome.
async fn write(
    mut conn: AsyncPgConnection,
    batch: Batch,
    on_conflict: OnConflict,
) -> (
    AsyncPgConnection,
    Batch,
    Result<Vec<BatchOutcome>, BatchError>,
) {
    let written = conn
        .transaction::<_, BatchError, _>(async |conn| {
            write_batch(conn, &batch.items, on_conflict, None, |_| true).await
        })
        .await;
    (conn, batch, written)
}

/// Why the batch of `lines` was not written.
fn refused(e: BatchError, lines: &[usize]) -> Fatal {
    let (first, last) = (lines[0], lines[lines.len() - 1]);
    match e {
        BatchError::Conflict(items) => Fatal(format!(
            "line {}: the slug is taken (rerun with --on-conflict skip or update); nothing of lines {first}..{last} was written",
            lines[items[0]]
        )),
        BatchError::Forbidden(_) => Fatal("not allowed".into()),
        BatchError::Query(e) => Fatal(format!(
            "database error: {e}; nothing of lines {first}..{last} was written"
        )),
    }
}

/// The slugs a batch names or may derive (from the title of a signal without one: the title's
/// own and its numbered forms, `-2` to `-4`): two batches that share one are written one after
/// the other, in order, so which signal gets a slug and which a suffixed one is the file's
/// order, not a race ("Foo Bar", "Foo: Bar" and an explicit `foo-bar` all want `foo-bar`; a
/// "Foo" whose `foo` is taken and an explicit `foo-2` both want `foo-2`).
fn names(items: &[SignalInput]) -> HashSet<String> {
    let mut names = HashSet::new();
    for item in items {
        match &item.slug {
            Some(slug) => {
                names.insert(slug.clone());
            }
            None => {
                let base = crate::domain::signal::slug_from_title(&item.title);
                names.extend(crate::db::writes::numbered_slugs(&base));
            }
        }
    }
    names
}

/// A progress bar on a terminal, a plain line per batch otherwise.
struct Progress(Option<ProgressBar>);

impl Progress {
    fn new(size: Option<u64>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = match size {
            Some(size) => ProgressBar::new(size).with_style(
                ProgressStyle::with_template("{bar:40} {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
            None => ProgressBar::new_spinner(),
        };
        Progress(Some(bar))
    }

    fn update(&self, bytes: u64, totals: &Totals, started: Instant) {
        let rows = totals.created + totals.updated + totals.skipped;
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        match &self.0 {
            Some(bar) => {
                bar.set_position(bytes);
                bar.set_message(format!("{rows} signals, {rate:.0}/s"));
            }
            None => eprintln!("imported {rows} signals ({rate:.0}/s)"),
        }
    }

    fn finish(&self, bytes: u64, totals: &Totals, started: Instant) {
        if let Some(bar) = &self.0 {
            self.update(bytes, totals, started);
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(fields: serde_json::Value) -> SignalInput {
        let mut value = serde_json::json!({
            "title": "Foo",
            "score": 7,
            "category": "Industry",
            "published_at": "2026-05-06T18:02:00Z",
            "summary": "A summary.",
        });
        value
            .as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        SignalInput::parse(&value).unwrap()
    }

    #[test]
    fn batches_that_may_want_one_slug_are_not_written_at_once() {
        let titled = names(&[item(serde_json::json!({}))]);
        // "Foo" gets `foo`, or `foo-2` to `-4` when that is taken: each such slug given
        // explicitly in another batch contends with it.
        for slug in ["foo", "foo-2", "foo-4"] {
            let named = names(&[item(serde_json::json!({ "slug": slug }))]);
            assert!(!titled.is_disjoint(&named), "{slug}");
        }
        let other = names(&[item(serde_json::json!({ "slug": "foo-bar" }))]);
        assert!(titled.is_disjoint(&other));
    }
}
