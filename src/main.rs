//! The `gatehouse` command line. Everything else lives in the library.

mod cli;
mod cli_cert;
mod cli_registry;
mod cli_session;

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
    /// The built-in certificate authority (on the store of a stopped broker).
    #[command(subcommand)]
    Cert(cli_cert::CertCommand),
    /// Stored MQTT sessions (on the store of a stopped broker).
    #[command(subcommand)]
    Session(cli_session::SessionCommand),
    /// The client registry of a running broker, through its admin API.
    Registry(cli_registry::RegistryArgs),
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::load(path)?),
        None if Path::new("broker.toml").exists() => Ok(Config::load(Path::new("broker.toml"))?),
        None => Ok(Config::default()),
    }
}

/// argon2 takes 19 MiB per verification. glibc would otherwise raise its
/// mmap threshold after the first such free and keep every later buffer in
/// the heap of whichever blocking thread ran the hash: ~19 MiB of RSS per
/// thread, forever. A fixed threshold returns them to the system.
fn return_large_allocations_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

fn main() -> anyhow::Result<()> {
    return_large_allocations_to_the_system();
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
        Command::Cert(command) => cli_cert::cert(&config, command),
        Command::Session(command) => cli_session::session(&config, command),
        Command::Registry(args) => cli_registry::registry(&config, args),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let broker = gatehouse::start(config).await?;
        wait_for_signal(&broker).await?;
        tracing::info!("shutting down");
        broker.shutdown().await;
        Ok(())
    })
}

/// Returns on SIGTERM or SIGINT; SIGHUP reloads the TLS certificate.
async fn wait_for_signal(broker: &gatehouse::RunningBroker) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            result = tokio::signal::ctrl_c() => return result.context("waiting for SIGINT"),
            _ = hup.recv() => {
                if let Err(e) = broker.reload_tls() {
                    tracing::error!("SIGHUP: keeping the current certificate: {e}");
                }
            }
        }
    }
}
