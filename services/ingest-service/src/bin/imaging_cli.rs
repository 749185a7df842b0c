//! `imaging-cli`: a small client for the ingest service — mint dev tokens, register workspaces
//! and targets, upload, fetch URLs and usage.

use clap::{Parser, Subcommand, ValueEnum};
use imaging_proto::v1;
use imaging_proto::v1::image_ingest_client::ImageIngestClient;
use imaging_proto::v1::target_registry_client::TargetRegistryClient;
use ingest_service::auth::{Claims, mint_hs256};
use ingest_service::configuration;
use secrecy::ExposeSecret;
use std::path::PathBuf;
use tonic::Request;
use tonic::metadata::MetadataValue;

#[derive(Debug, Parser)]
#[command(version, about = "Client for the receipt image ingest service")]
struct Cli {
    /// gRPC address of the ingest service.
    #[arg(long, env = "IMAGING_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// Bearer token (see `imaging-cli token`).
    #[arg(long, env = "IMAGING_TOKEN", default_value = "")]
    token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    Receipt,
    ExpenseEntry,
    Invoice,
    Report,
    WorkspaceExpense,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint an HS256 token with the configured (dev) secret.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        ws: String,
        /// Comma-separated roles, e.g. company_admin,service.
        #[arg(long, default_value = "")]
        roles: String,
        /// Comma-separated permissions, e.g. financial.
        #[arg(long, default_value = "")]
        perms: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// Settings file holding the secret (else APP__AUTH__HS256_SECRET).
        #[arg(long, env = "APP_CONFIG")]
        config: Option<PathBuf>,
        /// Sign with the dev secret when no secret is configured (a service run with --dev).
        #[arg(long)]
        dev: bool,
    },
    /// Register a workspace (needs role `service`).
    RegisterWorkspace {
        workspace: String,
        #[arg(long, default_value_t = 0)]
        quota_bytes: u64,
    },
    /// Register a target (needs role `service`).
    RegisterTarget {
        #[arg(value_enum)]
        kind: Kind,
        id: String,
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        owner: String,
    },
    /// Upload a file.
    Upload {
        #[arg(value_enum)]
        kind: Kind,
        file: PathBuf,
        /// Target ID (none for receipts).
        #[arg(long, default_value = "")]
        id: String,
        /// Workspace ID (workspace expenses).
        #[arg(long, default_value = "")]
        workspace: String,
        /// Content type; guessed from the extension if omitted.
        #[arg(long)]
        content_type: Option<String>,
    },
    /// Show an image's metadata and a fresh URL.
    Get {
        #[arg(value_enum)]
        kind: Kind,
        id: String,
        #[arg(long, default_value = "")]
        workspace: String,
    },
    /// Show a workspace's quota usage.
    Usage { workspace: String },
    /// Recompute every workspace's usage from the image records and repair receipt lists, in
    /// the running service (needs a service token for every workspace, `ws` = `*`).
    Reconcile {
        /// Only report; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove leftovers of interrupted writes and objects no record names, in the running
    /// service (needs a service token for every workspace, `ws` = `*`).
    Janitor {
        /// Only leftovers older than this many seconds.
        #[arg(long, default_value_t = 3600)]
        older_than_seconds: u64,
    },
}

fn target(kind: Kind, id: String, workspace: String) -> v1::Target {
    let kind = match kind {
        Kind::Receipt => v1::TargetKind::Receipt,
        Kind::ExpenseEntry => v1::TargetKind::ExpenseEntry,
        Kind::Invoice => v1::TargetKind::Invoice,
        Kind::Report => v1::TargetKind::Report,
        Kind::WorkspaceExpense => v1::TargetKind::WorkspaceExpense,
    };
    v1::Target {
        kind: kind as i32,
        id,
        workspace_id: workspace,
    }
}

fn guess_type(file: &std::path::Path) -> String {
    match file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("pdf") => "application/pdf",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
    .to_owned()
}

fn authed<T>(token: &str, message: T) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let token = cli.token.clone();
    match cli.command {
        Command::Token {
            sub,
            ws,
            roles,
            perms,
            ttl,
            config,
            dev,
        } => {
            let settings = configuration::load(config.as_deref(), dev)?;
            anyhow::ensure!(
                !settings.auth.hs256_secret.expose_secret().is_empty(),
                "no HS256 secret: set APP__AUTH__HS256_SECRET, or pass --dev for the dev secret"
            );
            fn split(list: &str) -> Vec<&str> {
                list.split(',').filter(|item| !item.is_empty()).collect()
            }
            let claims = Claims::expiring_in(&sub, &ws, &split(&roles), &split(&perms), ttl);
            println!(
                "{}",
                mint_hs256(settings.auth.hs256_secret.expose_secret(), &claims)?
            );
        }
        Command::RegisterWorkspace {
            workspace,
            quota_bytes,
        } => {
            let mut client = TargetRegistryClient::connect(cli.addr).await?;
            let reply = client
                .register_workspace(authed(
                    &token,
                    v1::RegisterWorkspaceRequest {
                        workspace_id: workspace,
                        quota_bytes,
                    },
                )?)
                .await?;
            println!("quota_bytes: {}", reply.into_inner().quota_bytes);
        }
        Command::RegisterTarget {
            kind,
            id,
            workspace,
            owner,
        } => {
            let mut client = TargetRegistryClient::connect(cli.addr).await?;
            let request = v1::RegisterTargetRequest {
                target: Some(target(kind, id, workspace.clone())),
                workspace_id: workspace,
                owner,
            };
            let reply = client.register_target(authed(&token, request)?).await?;
            println!("created: {}", reply.into_inner().created);
        }
        Command::Upload {
            kind,
            file,
            id,
            workspace,
            content_type,
        } => {
            let bytes = tokio::fs::read(&file).await?;
            let header = v1::UploadHeader {
                target: Some(target(kind, id, workspace)),
                content_type: content_type.unwrap_or_else(|| guess_type(&file)),
                file_name: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                declared_size: bytes.len() as u64,
                ..Default::default()
            };
            let mut messages = vec![v1::UploadImageRequest {
                part: Some(v1::upload_image_request::Part::Header(header)),
            }];
            messages.extend(
                bytes
                    .chunks(256 * 1024)
                    .map(|chunk| v1::UploadImageRequest {
                        part: Some(v1::upload_image_request::Part::Chunk(
                            bytes::Bytes::copy_from_slice(chunk),
                        )),
                    }),
            );
            let mut client = ImageIngestClient::connect(cli.addr).await?;
            let reply = client
                .upload_image(authed(&token, tokio_stream::iter(messages))?)
                .await?
                .into_inner();
            println!("{reply:#?}");
        }
        Command::Get {
            kind,
            id,
            workspace,
        } => {
            let mut client = ImageIngestClient::connect(cli.addr).await?;
            let request = v1::GetImageRequest {
                target: Some(target(kind, id, workspace)),
                owner: String::new(),
            };
            println!(
                "{:#?}",
                client
                    .get_image(authed(&token, request)?)
                    .await?
                    .into_inner()
            );
        }
        Command::Usage { workspace } => {
            let mut client = ImageIngestClient::connect(cli.addr).await?;
            let request = v1::GetUsageRequest {
                workspace_id: workspace,
            };
            println!(
                "{:#?}",
                client
                    .get_usage(authed(&token, request)?)
                    .await?
                    .into_inner()
            );
        }
        Command::Reconcile { dry_run } => {
            let mut client = TargetRegistryClient::connect(cli.addr).await?;
            let reply = client
                .reconcile(authed(&token, v1::ReconcileRequest { dry_run })?)
                .await?
                .into_inner();
            for drift in &reply.drifts {
                let note = match (dry_run, drift.repaired) {
                    (true, _) => "",
                    (false, true) => "\trepaired",
                    (false, false) => "\tchanged meanwhile; run again",
                };
                println!(
                    "{}\trecorded {}\tactual {}{note}",
                    drift.workspace_id, drift.recorded_bytes, drift.actual_bytes
                );
            }
            let how = if dry_run {
                " (dry run, nothing changed)"
            } else {
                ""
            };
            println!("{} workspace(s) drifted{how}", reply.drifts.len());
            println!(
                "receipt lists: {} entr(ies) missing, {} stray{how}",
                reply.list_entries_added, reply.list_entries_removed
            );
        }
        Command::Janitor { older_than_seconds } => {
            let mut client = TargetRegistryClient::connect(cli.addr).await?;
            let reply = client
                .sweep(authed(&token, v1::SweepRequest { older_than_seconds })?)
                .await?
                .into_inner();
            println!(
                "removed {} leftover(s), {} orphan(s) and {} expired upload session(s)",
                reply.leftovers_removed, reply.orphans_removed, reply.sessions_removed
            );
        }
    }
    Ok(())
}
