//! `ingest-service`: runs the gRPC ingest service (default) or an operations command.

use clap::{Parser, Subcommand};
use ingest_service::configuration;
use ingest_service::startup::{self, Application};
use std::path::PathBuf;

/// Counts what each pipeline step allocates, so that a step is held to the memory it reserved
/// while it runs (`imaging_pipeline::meter`).
#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

#[derive(Debug, Parser)]
#[command(version, about = "Receipt image ingest service")]
struct Cli {
    /// TOML settings file (defaults, then this file, then APP__SECTION__KEY variables).
    #[arg(long, env = "APP_CONFIG")]
    config: Option<PathBuf>,
    /// Development mode: built-in dev secrets fill in missing keys. Never for production.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve gRPC (the default).
    Serve,
    /// Recompute every workspace's quota usage from the image records and report drift.
    Reconcile {
        /// Only report; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove leftovers of interrupted writes (temp files, abandoned multipart uploads) and
    /// objects no record names.
    Janitor {
        /// Only leftovers older than this many seconds.
        #[arg(long, default_value_t = 3600)]
        older_than_seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = imaging_telemetry::init("ingest-service", "info")?;
    let cli = Cli::parse();
    let settings = configuration::load(cli.config.as_deref(), cli.dev)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings).await?;
            tracing::info!(grpc_port = app.grpc_port(), files_port = ?app.files_port(), "ingest service listening");
            app.run_until(imaging_telemetry::shutdown_signal()).await
        }
        Command::Reconcile { dry_run } => {
            let (quota, catalog) = startup::state_backend(&settings.state).map_err(held)?;
            let drifts =
                ingest_service::reconcile::reconcile(quota.as_ref(), catalog.as_ref(), !dry_run)
                    .await?;
            for drift in &drifts {
                let note = match (dry_run, drift.repaired) {
                    (true, _) => "",
                    (false, true) => "\trepaired",
                    (false, false) => "\tchanged meanwhile; run again",
                };
                println!(
                    "{}\trecorded {}\tactual {}{note}",
                    drift.workspace, drift.recorded, drift.actual
                );
            }
            println!(
                "{} workspace(s) drifted{}",
                drifts.len(),
                if dry_run {
                    " (dry run, nothing changed)"
                } else {
                    ", repaired"
                }
            );
            let lists =
                ingest_service::reconcile::reconcile_listings(catalog.as_ref(), !dry_run).await?;
            println!(
                "receipt lists: {} entr(ies) missing, {} stray{}",
                lists.added,
                lists.removed,
                if dry_run { " (dry run)" } else { ", repaired" }
            );
            Ok(())
        }
        Command::Janitor { older_than_seconds } => {
            let (store, _) = startup::storage_backend(&settings.storage, "").await?;
            let (_, catalog) = startup::state_backend(&settings.state).map_err(held)?;
            let grace = std::time::Duration::from_secs(older_than_seconds);
            let (leftovers, orphans) =
                ingest_service::janitor::sweep(store.as_ref(), catalog.as_ref(), grace).await?;
            println!("removed {leftovers} leftover(s) and {orphans} orphan(s)");
            Ok(())
        }
    }
}

/// The error of opening the state backend, with what to do when a running service holds the
/// embedded state file.
fn held(err: anyhow::Error) -> anyhow::Error {
    if format!("{err:#}").contains("already open") {
        err.context(
            "the embedded state file is open in the running service: run `imaging-cli reconcile` \
             or `imaging-cli janitor` against the service instead (no downtime), or stop it first",
        )
    } else {
        err
    }
}
