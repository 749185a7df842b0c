//! `gateway`: serves the REST API until SIGTERM or Ctrl-C.

use clap::Parser;
use gateway::configuration;
use gateway::startup::Application;
use imaging_telemetry::shutdown_signal;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(version, about = "Receipt image REST gateway")]
struct Cli {
    /// TOML settings file (defaults, then this file, then APP__SECTION__KEY variables).
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = imaging_telemetry::init("gateway", "info")?;
    let cli = Cli::parse();
    let settings = configuration::load(cli.config.as_deref())?;
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), "gateway listening");
    app.run_until(shutdown_signal()).await
}
