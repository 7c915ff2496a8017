//! `signals import FILE.jsonl`: streams one JSON signal a line into the database in batches,
//! through the batch endpoint's validation (`parse_item`) and write (`write_batch`), each batch
//! in its own transaction. A bad line stops the import: the batches before it stay, nothing of
//! its own batch is written, and rerunning with `--on-conflict skip` resumes (for lines that
//! carry a slug: lines without one would get new, suffixed slugs).

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
    let mut bytes = 0;
    // The earliest error (a bad line, or a batch the database refused), by the first line of
    // what was not written, and the lines of every batch that was.
    let mut stop: Option<(Fatal, usize)> = None;
    let mut written_lines: Vec<(usize, usize)> = Vec::new();
    let mut read_all = false;
    loop {
        while stop.is_none() && !read_all && !idle.is_empty() {
            match rx.recv().await {
                Some(Ok(batch)) => {
                    let mut conn = idle.pop().expect("an idle connection");
                    writing.push(async move {
                        let written =
                            write(&mut conn, &batch.items, &batch.lines, on_conflict).await;
                        (conn, batch.lines, batch.bytes, written)
                    });
                }
                // Every batch before the bad line was sent.
                Some(Err(bad_line)) => stop = Some((bad_line, usize::MAX)),
                None => read_all = true,
            }
        }
        let Some((conn, lines, batch_bytes, written)) = writing.next().await else {
            break;
        };
        idle.push(conn);
        let (first, last) = (lines[0], lines[lines.len() - 1]);
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
                bytes = bytes.max(batch_bytes);
                progress.update(bytes, &totals, started);
            }
            Err(e) => match &stop {
                Some((_, earlier)) if *earlier < first => {}
                _ => stop = Some((e, first)),
            },
        }
    }
    // Dropping the receiver ends the reading thread if it is still going.
    drop(rx);
    let _ = parser.join();
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

/// One batch, in a transaction of its own; an error names its lines.
async fn write(
    conn: &mut AsyncPgConnection,
    batch: &[SignalInput],
    lines: &[usize],
    on_conflict: OnConflict,
) -> Result<Vec<BatchOutcome>, Fatal> {
    let (first, last) = (lines[0], lines[lines.len() - 1]);
    conn.transaction::<_, BatchError, _>(async |conn| {
        write_batch(conn, batch, on_conflict, None, |_| true).await
    })
    .await
    .map_err(|e| match e {
        BatchError::Conflict(items) => Fatal(format!(
            "line {}: the slug is taken (rerun with --on-conflict skip or update); nothing of lines {first}..{last} was written",
            lines[items[0]]
        )),
        BatchError::Forbidden(_) => Fatal("not allowed".into()),
        BatchError::Query(e) => Fatal(format!(
            "database error: {e}; nothing of lines {first}..{last} was written"
        )),
    })
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
