//! `imaging-cli`: a client for the ingest service — mint dev tokens, register workspaces and
//! targets, upload (at once, or processed asynchronously) and append, follow a receipt's
//! processing status, list, get, download (its SHA-256 checked) and delete images, read usage. Results are aligned `key  value` lines, or one JSON document
//! with `--json`; a refusal is printed as `REASON: message` on stderr with an exit code by class
//! (see [`exit_code`]).

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

mod batch;
mod output;
mod profile;
mod resume;
mod transfer;

use output::{duplicates, show, size, status_name, time_text, upload_fields};
use transfer::{download, send};

#[derive(Debug, Parser)]
#[command(version, about = "Client for the receipt image ingest service")]
struct Cli {
    /// gRPC address of the ingest service (`https://` for TLS); else the profile's, else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "IMAGING_ADDR", global = true)]
    addr: Option<String>,
    /// Bearer token (see `imaging-cli token`); else the profile's.
    #[arg(long, env = "IMAGING_TOKEN", global = true)]
    token: Option<String>,
    /// The profile of the config file (~/.config/imaging/config.toml, or IMAGING_CONFIG).
    #[arg(
        long,
        env = "IMAGING_PROFILE",
        default_value = "default",
        global = true
    )]
    profile: String,
    /// PEM file of the certificate authority of a TLS service (else the profile's, else the
    /// web's root certificates).
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// Print each result as one JSON document (for scripts and `jq`).
    #[arg(long, global = true)]
    json: bool,
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
        /// Refuse uploads of bytes the workspace already holds (`true`), or flag them (`false`).
        #[arg(long)]
        refuse_duplicates: Option<bool>,
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
    /// Upload a file, or several (files or directories: a new receipt each), a few at once.
    Upload {
        #[arg(value_enum)]
        kind: Kind,
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Uploads at once when there are several files.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Target ID (none for receipts).
        #[arg(long, default_value = "")]
        id: String,
        /// Workspace ID (workspace expenses).
        #[arg(long, default_value = "")]
        workspace: String,
        /// Content type; guessed from the extension if omitted.
        #[arg(long)]
        content_type: Option<String>,
        /// A new receipt processed asynchronously (as Concur Receipts v4): the answer is its ID;
        /// follow it with `imaging-cli status`.
        #[arg(long = "async")]
        process_async: bool,
        /// Receipts: the user the upload is for (admin roles).
        #[arg(long, default_value = "")]
        owner: String,
        /// Send it through a resumable session: if it is cut off, the same command again
        /// continues where the service's committed bytes end.
        #[arg(long)]
        resume: bool,
        /// A retry with the same key (and the same bytes) gets the first upload's result and
        /// stores nothing more (`replayed  true`).
        #[arg(long, default_value = "")]
        idempotency_key: String,
    },
    /// Append a file to a receipt (it becomes one PDF) or a report.
    Append {
        #[arg(value_enum)]
        kind: Kind,
        id: String,
        file: PathBuf,
        /// Content type; guessed from the extension if omitted.
        #[arg(long)]
        content_type: Option<String>,
        /// Receipts: the user the receipt is for (admin roles).
        #[arg(long, default_value = "")]
        owner: String,
    },
    /// Show where a receipt uploaded with `--async` is, with its processing log.
    Status { id: String },
    /// List your receipts (or a user's, for admins), newest first.
    List {
        /// Whose receipts (admin roles); yours if omitted.
        #[arg(long, default_value = "")]
        owner: String,
        /// Receipts per page (1 to 100).
        #[arg(long, default_value_t = 25)]
        limit: i32,
        /// The page after this token (printed with the page before).
        #[arg(long, default_value = "")]
        page_token: String,
        /// Every page.
        #[arg(long)]
        all: bool,
    },
    /// Download an image to a file, checking its SHA-256.
    Download {
        #[arg(value_enum)]
        kind: Kind,
        id: String,
        /// Where to write it (refused if it exists, unless --force).
        #[arg(short = 'o', long)]
        output: PathBuf,
        #[arg(long, default_value = "")]
        workspace: String,
        /// Overwrite the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Delete an image; its bytes are given back to the quota.
    Delete {
        #[arg(value_enum)]
        kind: Kind,
        id: String,
        #[arg(long, default_value = "")]
        workspace: String,
        /// Receipts: the user the receipt is for (admin roles).
        #[arg(long, default_value = "")]
        owner: String,
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
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
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("tif" | "tiff") => "image/tiff",
        Some("gif") => "image/gif",
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

/// Exit codes: 0 done, 1 anything else, 2 usage (from the argument parser), 3 not authorized
/// (no, bad or insufficient token), 4 not found, 5 refused (the request or the file), 6 the
/// service or its backends unavailable (retry later).
fn exit_code(code: tonic::Code) -> u8 {
    use tonic::Code;
    match code {
        Code::Unauthenticated | Code::PermissionDenied => 3,
        Code::NotFound => 4,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::OutOfRange
        | Code::ResourceExhausted => 5,
        Code::Unavailable | Code::DeadlineExceeded => 6,
        _ => 1,
    }
}

/// What to do about a refusal, in a line, when there is something to do.
fn hint(status: &tonic::Status, reason: &str) -> Option<String> {
    use tonic_types::StatusExt;
    let details = status.get_error_details();
    let metadata = details
        .error_info()
        .map(|info| info.metadata.clone())
        .unwrap_or_default();
    let number = |key: &str| metadata.get(key).and_then(|v| v.parse::<u64>().ok());
    Some(match reason {
        "TOKEN_MISSING" | "TOKEN_INVALID" | "TOKEN_EXPIRED" => {
            "pass a token with --token or IMAGING_TOKEN (a dev token: imaging-cli token --dev ...)"
                .to_owned()
        }
        "PERMISSION_DENIED" => {
            "the token's workspace, roles or user do not allow this; check its claims".to_owned()
        }
        "QUOTA_EXCEEDED" => {
            let workspace = details
                .quota_failure()
                .and_then(|q| q.violations.first().map(|v| v.subject.clone()))
                .map(|s| s.trim_start_matches("workspace:").to_owned())
                .unwrap_or_default();
            let (used, limit) = (number("used")?, number("limit")?);
            format!(
                "workspace {workspace} uses {} of {}; delete images or raise its quota (register-workspace --quota-bytes)",
                output::size_text(used),
                output::size_text(limit)
            )
        }
        "DUPLICATE_IMAGE" => format!(
            "the workspace holds this file already as {}",
            metadata.get("image_id")?
        ),
        "CONTENT_TYPE_MISMATCH" | "UNSUPPORTED_MEDIA_TYPE" => {
            "name the file's real type with --content-type".to_owned()
        }
        "OVERLOADED" | "BUSY" | "STORAGE_UNAVAILABLE" | "QUOTA_UNAVAILABLE" | "SHUTTING_DOWN" => {
            "retry in a few seconds".to_owned()
        }
        _ => return None,
    })
}

/// Ends the process with this code, having said why already.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
struct ExitWith(u8);

/// A failure's reason (the `ErrorReason` name of a refusal) and message.
fn reason_of(err: &anyhow::Error) -> (String, String) {
    match err.downcast_ref::<tonic::Status>() {
        Some(status) => {
            use tonic_types::StatusExt;
            let reason = status.get_error_details().error_info().map_or_else(
                || format!("{:?}", status.code()),
                |info| info.reason.clone(),
            );
            (reason, status.message().to_owned())
        }
        None => ("ERROR".to_owned(), format!("{err:#}")),
    }
}

fn main() -> std::process::ExitCode {
    // Before any thread starts: the platform lets the local offset be read only then.
    let _ = output::LOCAL_OFFSET
        .set(time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(start())
}

async fn start() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            if let Some(ExitWith(code)) = err.downcast_ref::<ExitWith>() {
                std::process::ExitCode::from(*code)
            } else if let Some(status) = err.downcast_ref::<tonic::Status>() {
                let (reason, message) = reason_of(&err);
                eprintln!("{reason}: {message}");
                if let Some(hint) = hint(status, &reason) {
                    eprintln!("  {hint}");
                }
                std::process::ExitCode::from(exit_code(status.code()))
            } else if err.downcast_ref::<tonic::transport::Error>().is_some() {
                eprintln!(
                    "UNAVAILABLE: the service cannot be reached ({err:#}); check --addr / IMAGING_ADDR"
                );
                std::process::ExitCode::from(6)
            } else {
                eprintln!("error: {err:#}");
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// Where the commands connect, and as whom.
struct Target {
    addr: String,
    ca_file: Option<PathBuf>,
}

impl Target {
    async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        profile::connect(&self.addr, self.ca_file.as_ref()).await
    }

    /// An image's metadata with a fresh URL (`get`, `download`).
    async fn get_image(&self, token: &str, target: v1::Target) -> anyhow::Result<v1::ImageInfo> {
        let request = v1::GetImageRequest {
            target: Some(target),
            owner: String::new(),
        };
        Ok(ImageIngestClient::new(self.channel().await?)
            .get_image(authed(token, request)?)
            .await?
            .into_inner())
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let json = cli.json;
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "imaging-cli", &mut std::io::stdout());
        return Ok(());
    }
    let profile = if matches!(cli.command, Command::Token { .. }) {
        profile::Profile::default()
    } else {
        profile::load(&cli.profile)?
    };
    let token = cli.token.or(profile.token).unwrap_or_default();
    let service = Target {
        addr: cli
            .addr
            .or(profile.addr)
            .unwrap_or_else(|| profile::DEFAULT_ADDR.to_owned()),
        ca_file: cli.ca_file.or(profile.ca_file),
    };
    match cli.command {
        Command::Completions { .. } => {}
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
            refuse_duplicates,
        } => {
            let mut client = TargetRegistryClient::new(service.channel().await?);
            let reply = client
                .register_workspace(authed(
                    &token,
                    v1::RegisterWorkspaceRequest {
                        workspace_id: workspace,
                        quota_bytes,
                        refuse_duplicates,
                    },
                )?)
                .await?;
            show(
                json,
                &[("quota_bytes", reply.into_inner().quota_bytes.into())],
            );
        }
        Command::RegisterTarget {
            kind,
            id,
            workspace,
            owner,
        } => {
            let mut client = TargetRegistryClient::new(service.channel().await?);
            let request = v1::RegisterTargetRequest {
                target: Some(target(kind, id, workspace.clone())),
                workspace_id: workspace,
                owner,
            };
            let reply = client.register_target(authed(&token, request)?).await?;
            show(json, &[("created", reply.into_inner().created.into())]);
        }
        Command::Upload {
            kind,
            files,
            concurrency,
            id,
            workspace,
            content_type,
            process_async,
            owner,
            resume,
            idempotency_key,
        } => {
            anyhow::ensure!(
                idempotency_key.is_empty() || files.len() == 1,
                "--idempotency-key names one upload: give one file"
            );
            let header = v1::UploadHeader {
                target: Some(target(kind, id.clone(), workspace)),
                content_type: content_type.clone().unwrap_or_default(),
                owner,
                process_async,
                idempotency_key,
                ..Default::default()
            };
            let single = files.len() == 1 && !files[0].is_dir();
            anyhow::ensure!(single || !resume, "--resume takes one file");
            if !single {
                anyhow::ensure!(
                    id.is_empty(),
                    "--id names one target: upload one file to it"
                );
                return batch::upload(
                    &service,
                    &token,
                    &header,
                    content_type.is_none(),
                    &files,
                    concurrency,
                    json,
                )
                .await;
            }
            let file = &files[0];
            let mut header = header;
            if content_type.is_none() {
                header.content_type = guess_type(file);
            }
            let reply = if resume {
                resume::upload(
                    service.channel().await?,
                    &service.addr,
                    &token,
                    header,
                    file,
                )
                .await?
            } else {
                send(service.channel().await?, &token, header, file, true).await?
            };
            show(json, &upload_fields(json, process_async, reply));
        }
        Command::Append {
            kind,
            id,
            file,
            content_type,
            owner,
        } => {
            let header = v1::UploadHeader {
                target: Some(target(kind, id, String::new())),
                content_type: content_type.unwrap_or_else(|| guess_type(&file)),
                owner,
                ..Default::default()
            };
            let reply = send(service.channel().await?, &token, header, &file, true).await?;
            show(
                json,
                &[
                    ("image_id", reply.image_id.into()),
                    ("content_type", reply.content_type.into()),
                    ("size", size(json, reply.size_bytes)),
                    ("pages", reply.page_count.into()),
                    ("sha256", hex::encode(&reply.sha256).into()),
                ],
            );
        }
        Command::List {
            owner,
            limit,
            page_token,
            all,
        } => {
            let mut client = ImageIngestClient::new(service.channel().await?);
            let mut token_at = page_token;
            let mut images = Vec::new();
            loop {
                let request = v1::ListImagesRequest {
                    kind: v1::TargetKind::Receipt.into(),
                    owner: owner.clone(),
                    page_size: limit,
                    page_token: token_at.clone(),
                };
                let page = client
                    .list_images(authed(&token, request)?)
                    .await?
                    .into_inner();
                images.extend(page.images);
                token_at = page.next_page_token;
                if !all || token_at.is_empty() {
                    break;
                }
            }
            if json {
                let listed: Vec<serde_json::Value> = images
                    .iter()
                    .map(|image| {
                        serde_json::json!({
                            "image_id": image.image_id,
                            "listed_at": time_text(image.listed_at_ms),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"images": listed, "next_page_token": token_at})
                );
            } else {
                for image in &images {
                    println!(
                        "{}  {}",
                        output::local_time_text(image.listed_at_ms),
                        image.image_id
                    );
                }
                if !token_at.is_empty() {
                    println!("more: --page-token {token_at}");
                }
            }
        }
        Command::Download {
            kind,
            id,
            output,
            workspace,
            force,
        } => {
            let info = service
                .get_image(&token, target(kind, id, workspace))
                .await?;
            let written = download(&info.url, &output, force, &info.sha256).await?;
            show(
                json,
                &[
                    ("image_id", info.image_id.into()),
                    ("file", output.display().to_string().into()),
                    ("size", size(json, written)),
                    ("content_type", info.content_type.into()),
                    ("sha256", hex::encode(&info.sha256).into()),
                ],
            );
        }
        Command::Delete {
            kind,
            id,
            workspace,
            owner,
        } => {
            let mut client = ImageIngestClient::new(service.channel().await?);
            let request = v1::DeleteImageRequest {
                target: Some(target(kind, id.clone(), workspace)),
                owner,
            };
            let reply = client
                .delete_image(authed(&token, request)?)
                .await?
                .into_inner();
            show(
                json,
                &[
                    ("deleted", id.into()),
                    ("released", size(json, reply.released_bytes)),
                ],
            );
        }
        Command::Get {
            kind,
            id,
            workspace,
        } => {
            let info = service
                .get_image(&token, target(kind, id, workspace))
                .await?;
            show(
                json,
                &[
                    ("image_id", info.image_id.into()),
                    ("url", info.url.into()),
                    ("url_expires_in_seconds", info.url_expires_in_seconds.into()),
                    ("content_type", info.content_type.into()),
                    ("size", size(json, info.size_bytes)),
                    ("width", info.width.into()),
                    ("height", info.height.into()),
                    ("pages", info.page_count.into()),
                    ("sha256", hex::encode(&info.sha256).into()),
                    ("owner", info.owner.into()),
                    ("workspace", info.workspace_id.into()),
                    ("duplicates", duplicates(json, &info.duplicates)),
                ],
            );
        }
        Command::Usage { workspace } => {
            let mut client = ImageIngestClient::new(service.channel().await?);
            let request = v1::GetUsageRequest {
                workspace_id: workspace,
            };
            let usage = client
                .get_usage(authed(&token, request)?)
                .await?
                .into_inner();
            let percent = if usage.limit_bytes == 0 {
                0.0
            } else {
                usage.used_bytes as f64 * 100.0 / usage.limit_bytes as f64
            };
            show(
                json,
                &[
                    ("used", size(json, usage.used_bytes)),
                    ("limit", size(json, usage.limit_bytes)),
                    (
                        "used_percent",
                        serde_json::Value::from((percent * 10.0).round() / 10.0),
                    ),
                ],
            );
        }
        Command::Status { id } => {
            let mut client = ImageIngestClient::new(service.channel().await?);
            let info = client
                .get_processing_status(authed(&token, v1::GetProcessingStatusRequest { id })?)
                .await?
                .into_inner();
            let failure = v1::ErrorReason::try_from(info.failure_reason)
                .ok()
                .filter(|reason| *reason != v1::ErrorReason::Unspecified)
                .map(|reason| reason.as_str_name().to_owned())
                .unwrap_or_default();
            let mut fields = vec![
                ("id", info.id.into()),
                ("status", status_name(info.status).into()),
            ];
            if json || !failure.is_empty() {
                fields.push(("failure_reason", failure.into()));
            }
            fields.extend([
                ("attempts", info.attempts.into()),
                (
                    "received_at",
                    output::when(json, info.received_at_ms).into(),
                ),
                (
                    if json { "received_bytes" } else { "received" },
                    size(json, info.received_bytes),
                ),
                ("content_type", info.content_type.into()),
                ("owner", info.owner.into()),
            ]);
            if json {
                let logs: Vec<serde_json::Value> = info
                    .logs
                    .iter()
                    .map(|line| {
                        serde_json::json!({
                            "level": line.level,
                            "message": line.message,
                            "time": time_text(line.timestamp_ms),
                        })
                    })
                    .collect();
                fields.push(("logs", logs.into()));
            }
            show(json, &fields);
            if !json {
                for line in &info.logs {
                    println!(
                        "  {}  {:7}  {}",
                        output::local_time_text(line.timestamp_ms),
                        line.level,
                        line.message
                    );
                }
            }
        }
        Command::Reconcile { dry_run } => {
            let mut client = TargetRegistryClient::new(service.channel().await?);
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
            let mut client = TargetRegistryClient::new(service.channel().await?);
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
