//! `state`: what the state backend costs per upload.
//!
//! 1. The embedded default as it grows: the release `ingest-service` on a database that already
//!    holds 1,000, then 100,000 receipts (loaded through the legacy-JSON migration, one
//!    transaction), timing small receipt uploads one after another. The two medians should be
//!    within 1.3x of each other: every state operation is O(log n).
//! 2. Redis, Redis Cluster (three primaries) and the embedded database behind the same service
//!    and the same filesystem storage, at concurrency 1 and 8.
//!
//! Build first: `cargo build --release --bin ingest-service` and
//! `cargo build --release -p imaging-bench --bins`; then `target/release/state`.

use anyhow::Context;
use clap::Parser;
use imaging_bench::service::{SECRET, Service, WORKSPACE, percentile};
use imaging_bench::stack::StackOptions;
use imaging_bench::table::Table;
use imaging_e2e::fixtures::jpeg;
use imaging_e2e::{RedisCluster, RedisServer};
use ingest_service::state::listing_entry;
use std::path::Path;

#[derive(Debug, Parser)]
#[command(about = "Per-upload cost of the state backends")]
struct Cli {
    /// Uploads timed per row.
    #[arg(long, default_value_t = 300)]
    uploads: usize,
    /// Receipts stored beforehand in the large embedded database.
    #[arg(long, default_value_t = 100_000)]
    stored: usize,
    /// A much shorter run to check that everything works.
    #[arg(long)]
    quick: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    if cli.quick {
        cli.uploads = 40;
        cli.stored = 10_000;
    }
    let options = StackOptions {
        s3_payload: "auto".to_owned(),
        service_env: Vec::new(),
        service_wrapper: Vec::new(),
        bin_dir: StackOptions::default_bin_dir()?,
        secret: SECRET.to_owned(),
        quota_bytes: 1 << 40,
    };
    let receipt = jpeg(320, 240);
    println!(
        "State benchmark: {} cores; a {}-byte receipt JPEG per upload, {} uploads per row.\n",
        std::thread::available_parallelism().map_or(0, usize::from),
        receipt.len(),
        cli.uploads
    );

    let mut growth = Table::new(&[
        "backend",
        "receipts stored",
        "C",
        "uploads",
        "p50 ms",
        "p90 ms",
        "uploads/s",
        "p50 vs 1,000 stored",
    ]);
    let mut small = None;
    for stored in [1_000, cli.stored] {
        let dir = tempfile::tempdir()?;
        prefill(dir.path(), stored, 100)?;
        let service = Service::start(&options, dir.path(), &[]).await?;
        let run = service.run(&receipt, cli.uploads, 1).await?;
        let baseline = *small.get_or_insert(run.p50);
        growth.row([
            "embedded".to_owned(),
            thousands(stored),
            "1".to_owned(),
            cli.uploads.to_string(),
            format!("{:.2}", run.p50),
            format!("{:.2}", run.p90),
            format!("{:.1}", run.rate),
            format!("{:.2}", run.p50 / baseline),
        ]);
    }
    println!("{}", growth.render());

    let mut backends = Table::new(&[
        "state backend",
        "C",
        "uploads",
        "p50 ms",
        "p90 ms",
        "uploads/s",
        "uploads/s vs embedded",
    ]);
    for concurrency in [1, 8] {
        let mut embedded_rate = None;
        for backend in ["embedded", "Redis", "Redis Cluster (3 primaries)"] {
            let dir = tempfile::tempdir()?;
            let mut _redis = None;
            let mut _cluster = None;
            let url = match backend {
                "Redis" => Some(_redis.insert(RedisServer::start()).url()),
                "embedded" => None,
                _ => Some(_cluster.insert(RedisCluster::start()).url()),
            };
            let env: Vec<(&str, &str)> = match &url {
                Some(url) => vec![
                    ("APP__STATE__BACKEND", "redis"),
                    ("APP__STATE__URL", url.as_str()),
                ],
                None => Vec::new(),
            };
            let service = Service::start(&options, dir.path(), &env).await?;
            service.register().await?;
            let run = service.run(&receipt, cli.uploads, concurrency).await?;
            let base = *embedded_rate.get_or_insert(run.rate);
            backends.row([
                backend.to_owned(),
                concurrency.to_string(),
                cli.uploads.to_string(),
                format!("{:.2}", run.p50),
                format!("{:.2}", run.p90),
                format!("{:.1}", run.rate),
                format!("{:.2}", run.rate / base),
            ]);
        }
    }
    println!("{}", backends.render());

    // Listing a page of 25 of one user's receipts.
    let mut listing = Table::new(&[
        "state backend",
        "one user's receipts",
        "page",
        "calls",
        "p50 ms",
        "p90 ms",
    ]);
    for stored in [1_000, cli.stored] {
        for backend in ["embedded", "Redis"] {
            let dir = tempfile::tempdir()?;
            let mut _redis = None;
            let env: Vec<(&str, String)> = if backend == "Redis" {
                let redis = _redis.insert(RedisServer::start());
                fill_redis_list(&redis.url(), stored).await?;
                vec![
                    ("APP__STATE__BACKEND", "redis".to_owned()),
                    ("APP__STATE__URL", redis.url()),
                ]
            } else {
                prefill(dir.path(), stored, 1)?;
                Vec::new()
            };
            let env: Vec<(&str, &str)> = env
                .iter()
                .map(|(name, value)| (*name, value.as_str()))
                .collect();
            let service = Service::start(&options, dir.path(), &env).await?;
            let middle = stored / 2;
            let middle_token = listing_entry(middle as u64, &format!("{middle:032x}"));
            for (page, token) in [("first", String::new()), ("middle", middle_token)] {
                let times = service.list_pages(25, &token, cli.uploads).await?;
                listing.row([
                    backend.to_owned(),
                    thousands(stored),
                    page.to_owned(),
                    times.len().to_string(),
                    format!("{:.3}", percentile(&times, 0.5)),
                    format!("{:.3}", percentile(&times, 0.9)),
                ]);
            }
        }
    }
    println!("{}", listing.render());
    Ok(())
}

/// Puts `stored` receipts of `user0` in its Redis list (the service's key layout).
async fn fill_redis_list(url: &str, stored: usize) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let owner: String = b"user0".iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("imaging:{{{WORKSPACE}}}:owner:{owner}");
    for chunk in (0..stored).collect::<Vec<_>>().chunks(10_000) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(&key);
        for n in chunk {
            zadd.arg(0)
                .arg(listing_entry(*n as u64, &format!("{n:032x}")));
        }
        let _: u64 = zadd.query_async(&mut connection).await?;
    }
    Ok(())
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Writes a `state.json` of the earlier format holding `stored` receipt records; the service
/// migrates it into its database, in one transaction, when it first starts.
fn prefill(dir: &Path, stored: usize, owners: usize) -> anyhow::Result<()> {
    let mut images = serde_json::Map::new();
    for n in 0..stored {
        let id = format!("{n:032x}");
        let owner = format!("user{}", n % owners);
        images.insert(
            format!("RECEIPT:{id}"),
            serde_json::json!({
                "image_id": id,
                "key": format!("ws/{WORKSPACE}/receipts/{id}/{id}.jpg"),
                "workspace": WORKSPACE,
                "owner": owner,
                "content_type": "image/jpeg",
                "size": 20_000,
                "width": 320,
                "height": 240,
                "page_count": 1,
                "sha256": "00",
                "listed": listing_entry(n as u64, &id),
            }),
        );
    }
    let state = serde_json::json!({
        "limits": {WORKSPACE: 1u64 << 40},
        "used": {WORKSPACE: 20_000 * stored as u64},
        "images": images,
    });
    std::fs::write(dir.join("state.json"), serde_json::to_vec(&state)?)
        .context("writing the prefilled state")
}
