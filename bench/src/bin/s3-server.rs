//! `s3-server`: the repository's test S3 server (`s3s-fs` over HTTP with SigV4, one empty bucket
//! in a temporary directory) as a process of its own, so the upload benchmark can measure its CPU
//! and memory apart from the ingest service's.
//!
//! Prints its endpoint (e.g. `http://127.0.0.1:41234`) as the first line on stdout, then serves
//! until SIGTERM or Ctrl-C, or (with `--exit-with-stdin`) until its stdin closes, so that it also
//! stops when the process that started it with a piped stdin goes away. The bucket and its
//! objects are deleted on the way out.
//! Credentials and bucket name: `imaging_e2e::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, S3_BUCKET}`.

use anyhow::Context;
use clap::Parser;
use imaging_e2e::S3Server;
use std::io::{Read, Write};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(about = "The test S3 server (s3s-fs, SigV4) as a process; prints its endpoint")]
struct Cli {
    /// Also stop when stdin closes (for a parent that holds the other end of a pipe).
    #[arg(long)]
    exit_with_stdin: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let server = S3Server::start().await;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", server.endpoint).context("writing the endpoint")?;
        stdout.flush().context("flushing stdout")?;
    }

    // stdin is read on a plain thread: its end (EOF or error) means the parent has gone.
    let (stdin_closed, on_stdin_closed) = tokio::sync::oneshot::channel::<()>();
    if cli.exit_with_stdin {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 256];
            while matches!(stdin.read(&mut buffer), Ok(n) if n > 0) {}
            let _ = stdin_closed.send(());
        });
    }
    let watch_stdin = async move {
        if cli.exit_with_stdin {
            let _ = on_stdin_closed.await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = watch_stdin => {}
    }
    // Dropping the server stops it and removes its temporary directory.
    drop(server);
    Ok(())
}
