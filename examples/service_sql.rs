//! Prints the SQL statement the service sends for a request, with `$n` placeholders, so that
//! pgbench can run exactly that statement (see `bench/run.sh`).
//!
//!     cargo run --release --example service_sql -- list 'min_score=7'
//!     cargo run --release --example service_sql -- list-kept 'tag=chips&min_score=7'
//!     cargo run --release --example service_sql -- list '' 2026-01-01T00:00:00Z <uuid>
//!     cargo run --release --example service_sql -- list-first-look 'q=chips'
//!     cargo run --release --example service_sql -- get <uuid>
//!     cargo run --release --example service_sql -- horizon|candidates

use signals::db::lists::{list_sql, Plan};
use signals::db::lookups::find_sql;
use signals::domain::query::{After, ListQuery, Sort};
use signals::domain::signal::SignalRef;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sql = match args.first().map(String::as_str) {
        Some("get") => {
            let r = SignalRef::parse(args.get(1).expect("an id or slug")).expect("an id or slug");
            find_sql(&r)
        }
        // `list-kept`: the statement for the one plan PostgreSQL keeps, which the service sends
        // when the statistics say enough signals pass the filters (`Shares::one_plan_fits`).
        // The default SIGNALS_SEARCH_HORIZON: how many of the newest documents a search's first
        // look covers (its bound is the time of the horizon-th newest).
        Some("horizon") => signals::config::DEFAULT_SEARCH_HORIZON.to_string(),
        // How many of a search's newest matches are ranked (a value of the search statements).
        Some("candidates") => signals::domain::query::SEARCH_CANDIDATES.to_string(),
        // `list-first-look`: a search's first page as the service sends it first, with the
        // horizon's time as one more bound (`Horizon` in src/db/lists.rs).
        Some(verb @ ("list" | "list-kept" | "list-first-look")) => {
            let query =
                ListQuery::parse(args.get(1).map_or("", String::as_str)).expect("a valid query");
            let after = match (args.get(2), args.get(3)) {
                (Some(t), Some(id)) => {
                    let t = signals::domain::input::parse_timestamp(t).expect("an RFC 3339 time");
                    let id = id.parse().expect("a UUID");
                    match query.sort {
                        Sort::PublishedDesc | Sort::PublishedAsc => Some(After::Published(t, id)),
                        _ => panic!("the after position is supported for time sorts only"),
                    }
                }
                _ => None,
            };
            let plan = match verb {
                "list-kept" => Plan::Kept,
                _ => Plan::PerValues,
            };
            list_sql(
                &query.filter,
                query.sort,
                after.as_ref(),
                None,
                query.limit,
                plan,
                (verb == "list-first-look").then(chrono::Utc::now),
            )
        }
        _ => {
            eprintln!("usage: service_sql list|list-kept|list-first-look QUERY [PUBLISHED_AT ID] | get ID | horizon | candidates");
            std::process::exit(2);
        }
    };
    println!("{sql}");
}
