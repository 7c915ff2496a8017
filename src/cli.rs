//! The `signals` command line: `serve` (the default), `migrate`, `keys`, `openapi`.

use std::net::TcpListener;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::config::{DatabaseSettings, LogFormat, ServeSettings};
use crate::db;
use crate::domain::key::{self, Scope};
use crate::startup::{self, Database, StopSignals};
use crate::{telemetry, Fatal};

#[derive(Debug, Parser)]
#[command(
    name = "signals",
    version,
    about = "Stores and serves scored signal items over a REST API"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeSettings,

    #[command(flatten)]
    database: DatabaseSettings,

    /// Log format on standard error.
    #[arg(
        long,
        env = "SIGNALS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve(Box<ServeSettings>),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Load signals from a JSON Lines file (one signal a line; `-` for standard input), in
    /// batches through the batch endpoint's validation and write path.
    Import {
        file: std::path::PathBuf,
        /// What a line whose slug another signal has does; `skip` resumes an interrupted import
        /// (exactly for lines that carry a slug: a line without one gets a new, suffixed slug).
        #[arg(long, value_enum, default_value = "error")]
        on_conflict: crate::domain::query::OnConflict,
        /// Signals per transaction.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
        batch_size: u16,
        /// Batches written at once, each on a connection of its own.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=16))]
        connections: u8,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it, alone, on standard output. It is shown only this once.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "read")]
        scope: Scope,
    },
    /// List keys, one a line: ID, name, scope, created, last used, state. Never the secret.
    List,
    /// Revoke a key by its ID; it stops working at once.
    Revoke { id: Uuid },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = actix_web::rt::System::new().block_on(run(cli));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signals: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Fatal> {
    // Every command that opens the database hears SIGTERM, SIGINT and SIGQUIT from its start:
    // one they stop is dropped, and with it the embedded PostgreSQL it started, which would
    // otherwise be left running.
    let stops = StopSignals::listen;
    match cli.command {
        Some(Command::Openapi) => {
            let doc = crate::api::openapi()
                .to_pretty_json()
                .map_err(|e| Fatal(e.to_string()))?;
            println!("{doc}");
            Ok(())
        }
        Some(Command::Serve(serve)) => serve_until_stopped(&cli.database, &serve, stops()?).await,
        None => serve_until_stopped(&cli.database, &cli.serve, stops()?).await,
        Some(Command::Migrate) => {
            let _db = stops()?.unless(Database::open(&cli.database)).await?;
            eprintln!("migrations are up to date");
            Ok(())
        }
        Some(Command::Keys(command)) => stops()?.unless(keys(&cli.database, command)).await,
        Some(Command::Import {
            file,
            on_conflict,
            batch_size,
            connections,
        }) => {
            let import = async {
                let database = Database::open(&cli.database).await?;
                let mut conns = Vec::new();
                for _ in 0..connections {
                    conns.push(db::connect_once(&database.url, &cli.database).await?);
                }
                crate::import::run(conns, &file, on_conflict, batch_size as usize).await
            };
            let left = |_| {
                ": the batches committed before it are kept, none in part; run it again with \
                 `--on-conflict skip` to go on (lines without a `slug` get new ones each time)"
                    .to_owned()
            };
            stops()?.unless_then(import, left).await.map(drop)
        }
    }
}

async fn serve_until_stopped(
    db_settings: &DatabaseSettings,
    settings: &ServeSettings,
    mut stops: StopSignals,
) -> Result<(), Fatal> {
    // Bind first: a taken port should fail before a database is started for nothing.
    let listener = TcpListener::bind(&settings.bind)
        .map_err(|e| Fatal(format!("cannot listen on {}: {e}", settings.bind)))?;
    let mut database = stops.unless(Database::open(db_settings)).await?;
    let addr = listener.local_addr().map_err(|e| Fatal(e.to_string()))?;
    let server = startup::run(listener, &database.url, db_settings, settings, stops).await?;
    tracing::info!(%addr, embedded = database.cluster.is_some(), "listening");
    // On SIGTERM/SIGINT the server stops after in-flight requests finish (up to the shutdown
    // timeout; see `startup::run`).
    let outcome = server
        .await
        .map_err(|e| Fatal(format!("server error: {e}")));
    if let Some(cluster) = database.cluster.as_mut() {
        cluster.stop();
    }
    outcome
}

async fn keys(db_settings: &DatabaseSettings, command: KeysCommand) -> Result<(), Fatal> {
    let database = Database::open(db_settings).await?;
    let mut conn = db::connect_once(&database.url, db_settings).await?;
    let fail = |e: diesel::result::Error| Fatal(format!("database error: {e}"));
    match command {
        KeysCommand::Create { name, scope } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 200 {
                return Err(Fatal("--name must be 1 to 200 characters".into()));
            }
            let generated = key::generate();
            let row = db::keys::create(&mut conn, name, scope, &generated)
                .await
                .map_err(fail)?;
            eprintln!(
                "created key {} ({}, {}); it is shown only this once",
                row.id, row.name, row.scope
            );
            println!("{}", generated.token);
        }
        KeysCommand::List => {
            for k in db::keys::list(&mut conn).await.map_err(fail)? {
                let last_used = k
                    .last_used_at
                    .map_or("never".to_owned(), |t| t.to_rfc3339());
                let state = k.revoked_at.map_or("active".to_owned(), |t| {
                    format!("revoked {}", t.to_rfc3339())
                });
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.scope,
                    k.created_at.to_rfc3339(),
                    last_used,
                    state
                );
            }
        }
        KeysCommand::Revoke { id } => {
            if !db::keys::revoke(&mut conn, id).await.map_err(fail)? {
                return Err(Fatal(format!("no active key with ID {id}")));
            }
            eprintln!("revoked key {id}");
        }
    }
    Ok(())
}
