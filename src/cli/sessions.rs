//! `gatehouse clients list|kick` (connected clients: a running broker
//! only) and `gatehouse sessions list|rm` (also on a stopped broker's
//! store).

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::encode;
use super::output::{self, s};
use super::{CliError, Ctx, Exit, Result, Target};

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Connected clients: client id, user, address, listener, protocol, login.
    List,
    /// Disconnect a client (v5 DISCONNECT 0x98); its session stays.
    Kick { client_id: String },
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Sessions: client id, owner, connected, expiry, queued messages.
    List,
    /// End a session: its connection closes, its subscriptions, queue and
    /// stored record go.
    Rm { client_id: String },
}

pub fn clients(ctx: &Ctx, command: ClientsCommand) -> Result<()> {
    let target = Target::detect(ctx)?;
    match (target, command) {
        (Target::Api(api), ClientsCommand::List) => {
            let clients = api.all_pages("/api/clients", "clients")?;
            if ctx.json {
                return output::json(&Value::Array(clients));
            }
            let rows: Vec<Vec<String>> = clients
                .iter()
                .map(|c| {
                    vec![
                        s(c, "clientId"),
                        s(c, "username"),
                        s(c, "address"),
                        s(c, "listener"),
                        match c["protocolVersion"].as_u64() {
                            Some(5) => "5".into(),
                            Some(4) => "3.1.1".into(),
                            _ => s(c, "protocolVersion"),
                        },
                        s(c, "authentication"),
                        output::time(c, "connectedSince"),
                    ]
                })
                .collect();
            output::table(
                &[
                    "CLIENT ID",
                    "USER",
                    "ADDRESS",
                    "LISTENER",
                    "MQTT",
                    "LOGIN",
                    "SINCE (UTC)",
                ],
                &rows,
            )
        }
        (Target::Api(api), ClientsCommand::Kick { client_id }) => {
            api.call(
                "DELETE",
                &format!("/api/clients/{}", encode(&client_id)),
                None,
            )?;
            output::line(format!("disconnected {client_id}"))
        }
        (Target::Local(_), ClientsCommand::List) => {
            eprintln!("no broker is running: no client is connected");
            if ctx.json {
                output::json(&json!([]))
            } else {
                Ok(())
            }
        }
        (Target::Local(_), ClientsCommand::Kick { client_id }) => Err(CliError::new(
            Exit::NotFound,
            format!("no broker is running: `{client_id}` is not connected"),
        )),
    }
}

pub fn sessions(ctx: &Ctx, command: SessionsCommand) -> Result<()> {
    let target = Target::detect(ctx)?;
    match (target, command) {
        (target, SessionsCommand::List) => {
            let sessions = match &target {
                Target::Api(api) => api.all_pages("/api/sessions", "sessions")?,
                Target::Local(local) => local.sessions_json(),
            };
            if ctx.json {
                return output::json(&Value::Array(sessions));
            }
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|x| {
                    let expiry = match x["expiryInterval"].as_u64() {
                        Some(0xFFFF_FFFF) => "never".into(),
                        Some(secs) => format!("{secs}s"),
                        None => String::new(),
                    };
                    vec![
                        s(x, "clientId"),
                        s(x, "owner"),
                        if x["connected"] == true { "yes" } else { "no" }.into(),
                        expiry,
                        output::time(x, "expiresAt"),
                        s(x, "queued"),
                    ]
                })
                .collect();
            output::table(
                &[
                    "CLIENT ID",
                    "OWNER",
                    "CONNECTED",
                    "EXPIRY",
                    "EXPIRES (UTC)",
                    "QUEUED",
                ],
                &rows,
            )
        }
        (Target::Api(api), SessionsCommand::Rm { client_id }) => {
            api.call(
                "DELETE",
                &format!("/api/sessions/{}", encode(&client_id)),
                None,
            )?;
            output::line(format!("session `{client_id}` removed"))
        }
        (Target::Local(local), SessionsCommand::Rm { client_id }) => {
            let known = local
                .sessions_json()
                .iter()
                .any(|x| x["clientId"] == client_id.as_str());
            if !known {
                return Err(CliError::new(
                    Exit::NotFound,
                    format!("no stored session for client id `{client_id}`"),
                ));
            }
            local.store.delete_session(&client_id);
            local
                .services
                .audit
                .record(&local.actor, "session.delete", &client_id, json!({}))?;
            drop(local);
            output::line(format!("session `{client_id}` removed"))
        }
    }
}
