//! The `gatehouse` command line. Everything else lives in the library;
//! the administrative commands are in `cli/`.

mod cli;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cli::{CliError, Ctx, Exit};
use gatehouse::Config;
use gatehouse::config::LogFormat;

#[derive(Parser)]
#[command(
    name = "gatehouse",
    version,
    about = "MQTT broker with identity built in",
    after_help = "Administrative commands work on a running broker through its admin API \
                  (log in first with `gatehouse login`), and on the store of a stopped one \
                  otherwise. Exit codes: docs/operations.md."
)]
struct Cli {
    /// Configuration file (default: ./broker.toml if present, else built-in defaults).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Admin API of a running broker (default: env GATEHOUSE_SERVER, the
    /// server of `gatehouse login`, else the configured `http` listener).
    #[arg(long, global = true)]
    server: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// CA certificate (PEM) of an https:// server (default: env
    /// GATEHOUSE_CA, the login's, else this host's `[tls] dir`/ca.crt).
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker (the default).
    Serve,
    /// Check the configuration and print it as TOML, defaults filled in.
    CheckConfig,
    /// Log in to a running broker's admin API; the token is kept for the
    /// next commands (0600, in ~/.config/gatehouse/).
    Login(cli::login::LoginArgs),
    /// Revoke the stored token and forget it.
    Logout,
    /// Manage users.
    #[command(subcommand)]
    User(cli::users::UserCommand),
    /// Manage roles.
    #[command(subcommand)]
    Role(cli::users::RoleCommand),
    /// The built-in certificate authority (on the store of a stopped broker).
    #[command(subcommand)]
    Cert(cli::cert::CertCommand),
    /// Connected clients (a running broker).
    #[command(subcommand)]
    Clients(cli::sessions::ClientsCommand),
    /// MQTT sessions.
    #[command(subcommand, visible_alias = "session")]
    Sessions(cli::sessions::SessionsCommand),
    /// Write a consistent backup of the whole store and its keys.
    Backup(cli::backup::BackupArgs),
    /// Restore a backup into a stopped broker's data directory.
    Restore(cli::backup::RestoreArgs),
    /// Import users, roles and permissions from another broker (stopped).
    #[command(subcommand)]
    Import(cli::import::ImportCommand),
    /// The client registry of a running broker, through its admin API.
    #[command(subcommand)]
    Registry(cli::registry::RegistryCommand),
}

fn load_config(path: Option<&Path>) -> Result<Config, gatehouse::config::ConfigError> {
    match path {
        Some(path) => Config::load(path),
        None if Path::new("broker.toml").exists() => Config::load(Path::new("broker.toml")),
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

/// Logs go to standard error (standard output is for command output);
/// `RUST_LOG` wins over `[log] level`.
fn init_logs(config: &Config, serving: bool) {
    let level = if serving {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    return_large_allocations_to_the_system();
    let cli = Cli::parse();
    let config = match load_config(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gatehouse: {e}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let serving = matches!(command, Command::Serve);
    init_logs(&config, serving);
    if serving {
        return match serve(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("gatehouse: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let ctx = Ctx {
        config,
        server: cli.server,
        json: cli.json,
        ca: cli.ca.or_else(|| {
            std::env::var_os("GATEHOUSE_CA")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        }),
    };
    match run(&ctx, command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError { exit, message }) => {
            if !message.is_empty() {
                eprintln!("gatehouse: {message}");
            }
            ExitCode::from(exit as u8)
        }
    }
}

fn run(ctx: &Ctx, command: Command) -> cli::Result<()> {
    match command {
        Command::Serve => unreachable!("handled in main"),
        Command::CheckConfig => {
            let text = toml::to_string_pretty(&ctx.config)
                .map_err(|e| CliError::failed(format!("printing the configuration: {e}")))?;
            cli::output::raw(&text)
        }
        Command::Login(args) => cli::login::login(ctx, args),
        Command::Logout => cli::login::logout(ctx),
        Command::User(command) => cli::users::user(ctx, command),
        Command::Role(command) => cli::users::role(ctx, command),
        Command::Cert(command) => cli::cert::cert(ctx, command),
        Command::Clients(command) => cli::sessions::clients(ctx, command),
        Command::Sessions(command) => cli::sessions::sessions(ctx, command),
        Command::Backup(args) => cli::backup::backup(ctx, args),
        Command::Restore(args) => cli::backup::restore(ctx, args),
        Command::Import(command) => cli::import::import(ctx, command),
        Command::Registry(command) => cli::registry::registry(ctx, command),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        // Before the listeners open: a signal that comes as soon as the
        // first client is served must find its handler, not kill the
        // process without a goodbye.
        let signals = Signals::install()?;
        let broker = gatehouse::start(config).await?;
        // Every listener is bound and the store is open.
        gatehouse::systemd::notify_ready();
        let watchdog = gatehouse::systemd::spawn_watchdog();
        signals.wait(&broker).await;
        tracing::info!("shutting down");
        gatehouse::systemd::notify("STOPPING=1");
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        broker.shutdown().await;
        Ok(())
    })
}

/// The signals the broker answers: SIGTERM and SIGINT stop it, SIGHUP
/// reloads the TLS certificate.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    /// Returns on SIGTERM or SIGINT.
    async fn wait(mut self, broker: &gatehouse::RunningBroker) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    if let Err(e) = broker.reload_tls() {
                        tracing::error!("SIGHUP: keeping the current certificate: {e}");
                    }
                }
            }
        }
    }
}
