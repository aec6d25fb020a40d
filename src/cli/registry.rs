//! `gatehouse registry ...`: the client registry (`docs/onboarding.md`).
//! Its lock and its requests live in a running broker's memory, so these
//! commands always go through the admin API, with the login of
//! `gatehouse login` or `GATEHOUSE_TOKEN`.

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{self, s};
use super::{CliError, Ctx, Exit, Result, Target};

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Let devices register (default `[registry] default_unlock_minutes`).
    Unlock {
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Stop accepting registrations.
    Lock,
    /// The lock state and the requests with their pairing codes.
    List,
    /// Grant USER's request; the new user gets exactly the roles given.
    Confirm {
        #[arg(value_name = "USER")]
        username: String,
        /// Role name or id (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// The pairing code the device shows: refused when the pending
        /// request has another (a different device asked meanwhile).
        #[arg(long)]
        code: Option<String>,
    },
    /// Drop USER's request.
    Reject {
        #[arg(value_name = "USER")]
        username: String,
    },
}

pub fn registry(ctx: &Ctx, command: RegistryCommand) -> Result<()> {
    let api = match Target::detect(ctx)? {
        Target::Api(api) => api,
        Target::Local(_) => {
            return Err(CliError::new(
                Exit::BrokerState,
                "no broker is running: the client registry lives in a running broker's memory",
            ));
        }
    };
    match command {
        RegistryCommand::Unlock { minutes } => {
            let body = match minutes {
                Some(0) => return Err(CliError::new(Exit::Usage, "--minutes must be at least 1")),
                Some(m) => json!({"duration": m.saturating_mul(60_000)}),
                None => json!({}),
            };
            let status = api.call("POST", "/api/client-registry/unlock", Some(&body))?;
            print_status(ctx, &status)
        }
        RegistryCommand::Lock => {
            let status = api.call("POST", "/api/client-registry/lock", None)?;
            print_status(ctx, &status)
        }
        RegistryCommand::List => {
            let status = api.get("/api/client-registry")?;
            if ctx.json {
                return output::json(&status);
            }
            print_status(ctx, &status)?;
            print_requests(&status)
        }
        RegistryCommand::Confirm {
            username,
            roles,
            code,
        } => {
            let mut body = json!({"username": username});
            if !roles.is_empty() {
                body["roles"] = json!(roles);
            }
            if let Some(code) = code {
                body["pairingCode"] = json!(code);
            }
            let created = api.call("POST", "/api/client-registry/confirm", Some(&body))?;
            if ctx.json {
                return output::json(&created);
            }
            output::line(format!(
                "confirmed `{username}` (user id {})",
                s(&created, "id")
            ))
        }
        RegistryCommand::Reject { username } => {
            let body = json!({"username": username});
            api.call("POST", "/api/client-registry/reject", Some(&body))?;
            if ctx.json {
                return output::json(&json!({"rejected": username}));
            }
            output::line(format!("rejected `{username}`"))
        }
    }
}

/// Seconds from now until `until` (Unix milliseconds).
fn seconds_until(until: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    until.saturating_sub(now).div_ceil(1000)
}

fn print_status(ctx: &Ctx, status: &Value) -> Result<()> {
    if ctx.json {
        return output::json(status);
    }
    match status["unlockedUntil"].as_u64() {
        Some(until) => output::line(format!("unlocked for another {} s", seconds_until(until))),
        None => output::line("locked"),
    }
}

fn print_requests(status: &Value) -> Result<()> {
    let empty = Vec::new();
    let requests = status["pendingRequests"].as_array().unwrap_or(&empty);
    if requests.is_empty() {
        return output::line("no requests");
    }
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            let roles: Vec<&str> = r["roles"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            vec![
                s(r, "username"),
                s(r, "method"),
                s(r, "flow"),
                s(r, "status"),
                s(r, "pairingCode"),
                s(r, "address"),
                r["attempts"].as_u64().unwrap_or(0).to_string(),
                r["conflicts"].as_u64().unwrap_or(0).to_string(),
                if roles.is_empty() {
                    "-".to_owned()
                } else {
                    roles.join(",")
                },
                s(r, "context"),
            ]
        })
        .collect();
    output::table(
        &[
            "USER",
            "METHOD",
            "FLOW",
            "STATUS",
            "CODE",
            "ADDRESS",
            "ATTEMPTS",
            "CONFLICTS",
            "ROLES",
            "CONTEXT",
        ],
        &rows,
    )
}
