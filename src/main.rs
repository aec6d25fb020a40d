//! The `gatehouse` command line. Everything else lives in the library.

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};

use gatehouse::Config;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "MQTT broker with identity built in"
)]
struct Cli {
    /// Configuration file (default: ./broker.toml if present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve,
    /// Check the configuration and print it with defaults filled in.
    CheckConfig,
    /// Manage users (on the store of a stopped broker).
    #[command(subcommand)]
    User(cli::UserCommand),
    /// Manage roles (on the store of a stopped broker).
    #[command(subcommand)]
    Role(cli::RoleCommand),
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None if Path::new("broker.toml").exists() => Ok(Config::load(Path::new("broker.toml"))?),
        None => Ok(Config::default()),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = load_config(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::CheckConfig => {
            println!("{config:#?}");
            Ok(())
        }
        Command::User(command) => cli::user(&config, command),
        Command::Role(command) => cli::role(&config, command),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let broker = gatehouse::start(config).await?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        broker.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => {}
        result = tokio::signal::ctrl_c() => result.context("waiting for SIGINT")?,
    }
    Ok(())
}
