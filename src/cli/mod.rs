//! The `gatehouse` administrative commands. Each works against a running
//! broker through its admin API (`client`), or, when no broker runs, on
//! its store through the same audited services the API calls (`local`).
//! [`Target::detect`] decides which; [`CliError`] carries the documented
//! exit code to the binary's edge.

pub mod backup;
pub mod cert;
pub mod client;
pub mod import;
pub mod local;
pub mod login;
pub mod output;
pub mod registry;
pub mod sessions;
pub mod users;

use std::io::BufRead;
use std::path::PathBuf;

use gatehouse::Config;
use gatehouse::broker::{StartError, open_store};
use gatehouse::http::error::ApiError;
use gatehouse::identity::IdentityError;
use gatehouse::identity::services::AdminError;
use gatehouse::store::StoreError;

use client::ApiClient;
use local::Local;

/// Exit codes (documented in docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or standard output closed early (`| head`).
    Ok = 0,
    /// The operation failed (invalid value, password policy, server error).
    Failed = 1,
    /// Bad command line or invalid configuration.
    Usage = 2,
    /// The admin API could not be reached.
    Unreachable = 3,
    /// Not logged in, token expired or revoked, wrong password.
    Unauthenticated = 4,
    /// Logged in, but without the permission.
    Forbidden = 5,
    /// No such user, role, client, session or file.
    NotFound = 6,
    /// Already exists, or in use.
    Conflict = 7,
    /// Needs a stopped broker (restore, import, certificates) or a running one.
    BrokerState = 8,
}

/// An error with its exit code; the message is printed to standard error.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> CliError {
        CliError {
            exit,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> CliError {
        CliError::new(Exit::Failed, message)
    }

    /// Exit code for an HTTP status, as the API or the local services
    /// (through the API's own mapping) answered.
    pub fn from_status(status: u16, message: impl Into<String>) -> CliError {
        let exit = match status {
            401 => Exit::Unauthenticated,
            403 => Exit::Forbidden,
            404 => Exit::NotFound,
            409 => Exit::Conflict,
            _ => Exit::Failed,
        };
        CliError::new(exit, message)
    }
}

impl From<ApiError> for CliError {
    fn from(e: ApiError) -> CliError {
        CliError::from_status(e.status.as_u16(), e.message)
    }
}

impl From<AdminError> for CliError {
    fn from(e: AdminError) -> CliError {
        ApiError::from(e).into()
    }
}

impl From<IdentityError> for CliError {
    fn from(e: IdentityError) -> CliError {
        ApiError::from(e).into()
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        match e {
            StoreError::InUse(_) => CliError::new(Exit::BrokerState, e.to_string()),
            e => CliError::failed(e.to_string()),
        }
    }
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> CliError {
        CliError::failed(e.to_string())
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> CliError {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return output::closed();
        }
        CliError::failed(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// What every command gets: the configuration and the global flags.
pub struct Ctx {
    pub config: Config,
    /// `--server`: the admin API's base URL.
    pub server: Option<String>,
    /// `--json`: machine-readable output.
    pub json: bool,
    /// `--ca` or `GATEHOUSE_CA`: the CA of an `https://` server.
    pub ca: Option<PathBuf>,
}

/// Where a command acts.
pub enum Target {
    /// A running broker, through its admin API.
    Api(ApiClient),
    /// A stopped broker's store, through the same services.
    Local(Box<Local>),
}

impl Target {
    /// The admin API when a server or token is given, or the store is
    /// held by a running broker; the store itself otherwise.
    pub fn detect(ctx: &Ctx) -> Result<Target> {
        let explicit = ctx.server.is_some()
            || client::env("GATEHOUSE_SERVER").is_some()
            || client::env("GATEHOUSE_TOKEN").is_some();
        if explicit {
            return Ok(Target::Api(ApiClient::for_broker(ctx)?));
        }
        let file = ctx.config.storage.dir.join("gatehouse.redb");
        let logged_in = client::StoredLogin::load()?.is_some();
        if !file.exists() && logged_in {
            return Ok(Target::Api(ApiClient::for_broker(ctx)?));
        }
        match open_store(&ctx.config) {
            Ok(store) => Ok(Target::Local(Box::new(Local::open(&ctx.config, store)?))),
            Err(StoreError::InUse(_)) => Ok(Target::Api(ApiClient::for_broker(ctx)?)),
            Err(e) if logged_in => {
                eprintln!("note: cannot open the store ({e}); using the admin API");
                Ok(Target::Api(ApiClient::for_broker(ctx)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The store of a stopped broker, for what the API cannot do.
    pub fn local_only(ctx: &Ctx, what: &str) -> Result<Local> {
        match open_store(&ctx.config) {
            Ok(store) => Local::open(&ctx.config, store),
            Err(StoreError::InUse(dir)) => Err(CliError::new(
                Exit::BrokerState,
                format!(
                    "{what} needs a stopped broker: the store in {dir} is in use (stop the broker, e.g. `systemctl stop gatehouse`)"
                ),
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// A password: the first line of standard input with `--password-stdin`,
/// else asked on the terminal (twice when `confirm`).
pub fn read_password(from_stdin: bool, label: &str, confirm: bool) -> Result<String> {
    let password = if from_stdin {
        stdin_line()?.ok_or_else(|| CliError::new(Exit::Usage, "no password on standard input"))?
    } else {
        let first = login::prompt(&format!("{label}: "), false)?;
        if confirm && login::prompt(&format!("{label} (again): "), false)? != first {
            return Err(CliError::new(Exit::Usage, "the passwords differ"));
        }
        first
    };
    if password.is_empty() {
        return Err(CliError::new(Exit::Usage, "empty password"));
    }
    Ok(password)
}

/// The next line of standard input without its line end; `None` at its end.
pub fn stdin_line() -> Result<Option<String>> {
    let mut line = String::new();
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::failed(format!("reading standard input: {e}")))?;
    Ok((n > 0).then(|| line.trim_end_matches(['\r', '\n']).to_owned()))
}
