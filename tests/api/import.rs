//! `signals import`: batches, a bad line, standard input, and a SIGKILL part-way.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::BIN;
use crate::helpers::TestDb;

fn line(i: usize) -> String {
    serde_json::json!({"slug": format!("imp-{i}"), "title": format!("Imported {i}"), "score": i % 11,
                       "category": "Import", "tags": ["bulk"], "body": "x".repeat(300)})
    .to_string()
}

fn write_file(lines: &[String]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "signals-import-{}.jsonl",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

async fn count(db: &TestDb) -> i64 {
    let client = db.sql().await;
    client
        .query_one("SELECT count(*) FROM signals", &[])
        .await
        .unwrap()
        .get(0)
}

fn import(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("import")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env_remove("RUST_LOG");
    cmd
}

#[actix_web::test]
async fn an_import_killed_part_way_resumes_to_exactly_every_row() {
    let db = TestDb::new().await;
    let file = write_file(&(0..10_000).map(line).collect::<Vec<_>>());
    let mut child = import(&db, &[file.to_str().unwrap(), "--batch-size", "200"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some batches are in, long before the end.
    let started = Instant::now();
    while count(&db).await < 1000 && started.elapsed() < Duration::from_secs(60) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = count(&db).await;
    assert!(partial > 0 && partial < 10_000, "{partial}");
    assert_eq!(partial % 200, 0, "whole batches or nothing: {partial}");

    let out = import(&db, &[file.to_str().unwrap(), "--on-conflict", "skip"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{} created", 10_000 - partial)),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{partial} skipped")), "{stderr}");
    assert!(stderr.contains("rows/s"), "{stderr}");
    assert_eq!(count(&db).await, 10_000);
    let _ = std::fs::remove_file(file);
}

#[actix_web::test]
async fn a_bad_line_stops_the_import_with_its_number_and_keeps_earlier_batches() {
    let db = TestDb::new().await;
    let mut lines: Vec<String> = (0..250).map(line).collect();
    lines.push(r#"{"title": "no score", "category": "x"}"#.into());
    lines.extend((251..300).map(line));
    let file = write_file(&lines);
    let out = import(&db, &[file.to_str().unwrap(), "--batch-size", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 251: score is required"), "{stderr}");
    assert_eq!(
        count(&db).await,
        200,
        "lines 1-200 stay, nothing of lines 201-251"
    );
    let _ = std::fs::remove_file(file);
}

/// A batch the database fails once (as two batches can deadlock) while the bad line after it
/// is read is written again alone, as any batch before a bad line is: the import keeps it and
/// names the bad line (before, the retry was skipped once a bad line was known, and the import
/// reported the batch's error and wrote none of it).
#[actix_web::test]
async fn a_batch_failed_once_before_a_bad_line_is_written_again_and_the_line_named() {
    let db = TestDb::new().await;
    let sql = db.sql().await;
    sql.batch_execute(
        "CREATE SEQUENCE fail_once;
         CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF nextval('fail_once') = 1 THEN
                 PERFORM pg_sleep(0.5);
                 RAISE EXCEPTION 'deadlock detected (made by the test)' USING ERRCODE = '40P01';
             END IF;
             RETURN NULL;
         END $$;
         CREATE TRIGGER fail_once BEFORE INSERT ON signals
             FOR EACH STATEMENT EXECUTE FUNCTION fail_once();",
    )
    .await
    .unwrap();
    let mut lines: Vec<String> = (0..100).map(line).collect();
    lines.push(r#"{"title": "no score", "category": "x"}"#.into());
    let file = write_file(&lines);
    let out = import(&db, &[file.to_str().unwrap(), "--batch-size", "100"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 101: score is required"), "{stderr}");
    assert_eq!(
        count(&db).await,
        100,
        "lines 1-100 written on the second try"
    );
    let _ = std::fs::remove_file(file);
}

#[actix_web::test]
async fn an_import_reads_standard_input() {
    let db = TestDb::new().await;
    let mut child = import(&db, &["-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n\n{}\n", line(1), line(2)).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&db).await, 2);
    // The same lines again are a conflict by default, reported at the right line.
    let mut child = import(&db, &["-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("\n{}\n\n{}\n", line(5), line(1)).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 4: the slug is taken"), "{stderr}");
    assert_eq!(count(&db).await, 2, "nothing of the batch was written");
}

/// Two connections write batches side by side: a batch the database refuses stops the import
/// with its lines, the batches before it stay, and the message names every later batch that was
/// written meanwhile, so the count of rows is exactly what it says.
#[actix_web::test]
async fn a_refused_batch_among_parallel_ones_says_exactly_what_was_written() {
    let db = TestDb::new().await;
    let taken = write_file(&[line(650)]);
    let out = import(&db, &[taken.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let file = write_file(&(0..2000).map(line).collect::<Vec<_>>());
    let out = import(
        &db,
        &[
            file.to_str().unwrap(),
            "--batch-size",
            "100",
            "--connections",
            "2",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("line 651: the slug is taken")
            && stderr.contains("nothing of lines 601..700 was written"),
        "{stderr}"
    );
    // Lines 1..600 and the ranges the message names after the refused batch.
    let after: i64 = stderr
        .split("lines ")
        .nth(2)
        .map(|ranges| {
            ranges
                .split(" after it")
                .next()
                .unwrap()
                .split(", ")
                .map(|r| {
                    let (a, b) = r.split_once("..").unwrap();
                    b.parse::<i64>().unwrap() - a.parse::<i64>().unwrap() + 1
                })
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(count(&db).await, 1 + 600 + after, "{stderr}");

    let out = import(&db, &[file.to_str().unwrap(), "--on-conflict", "skip"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&db).await, 2000);
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(taken);
}

/// Batches that share titles (or slugs) are written one after the other: the same title on
/// every line gives every line its own derived slug, on two connections as on one.
#[actix_web::test]
async fn batches_that_share_a_title_are_written_in_turn_with_distinct_slugs() {
    let db = TestDb::new().await;
    let lines: Vec<String> = (0..600)
        .map(|i| {
            serde_json::json!({"title": "Weekly report", "score": i % 11, "category": "Import"})
                .to_string()
        })
        .collect();
    let file = write_file(&lines);
    let out = import(&db, &[file.to_str().unwrap(), "--batch-size", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&db).await, 600);
    let _ = std::fs::remove_file(file);
}
