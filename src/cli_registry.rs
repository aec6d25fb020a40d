//! `gatehouse registry ...`: the client registry of a *running* broker,
//! through its admin API (the registry lives in the broker's memory, so
//! there is no offline form). The first part, [`ApiArgs`] and
//! [`ApiClient`], is how any command reaches the API: a base URL and a
//! token from `--token`, a one-call login (`--user` with
//! `--password-stdin`), or `GATEHOUSE_TOKEN`; a later `gatehouse login`
//! adds a stored token as one more source in [`ApiClient::connect`].

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::BufRead;
use std::time::Duration;

use gatehouse::Config;

/// Where the admin API is and who calls it.
#[derive(Args, Debug, Clone)]
pub struct ApiArgs {
    /// Admin API base URL, plain HTTP (default: the configuration's
    /// `[listeners] http` address, i.e. http://127.0.0.1:8080).
    #[arg(long, global = true)]
    server: Option<String>,
    /// API token (see `POST /api/login`); else `GATEHOUSE_TOKEN`.
    #[arg(long, global = true)]
    token: Option<String>,
    /// Log in as this user for this one command (with --password-stdin).
    #[arg(long = "user", id = "login_user", value_name = "NAME", global = true)]
    login_user: Option<String>,
    /// Read --user's password from the first line of standard input.
    #[arg(long, global = true)]
    password_stdin: bool,
}

/// Lifetime of the token a `--user` login asks for (revoked at the end).
const ONE_CALL_TOKEN_HOURS: f64 = 0.25;

/// Plain-HTTP client for the admin API, with the caller's token.
pub struct ApiClient {
    base: String,
    http: reqwest::blocking::Client,
    token: String,
    /// Fingerprint of a token this client logged in for (revoked on close).
    own_token: Option<String>,
}

/// The API's base URL: `--server`, else the configured http listener
/// (an unspecified address means this host's loopback).
fn base_url(args: &ApiArgs, config: &Config) -> anyhow::Result<String> {
    let base = match &args.server {
        Some(server) => server.trim_end_matches('/').to_owned(),
        None => {
            let mut addr = config
                .listeners
                .http
                .unwrap_or_else(|| ([127, 0, 0, 1], 8080).into());
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            format!("http://{addr}")
        }
    };
    if base.starts_with("https://") {
        bail!(
            "--server: this command speaks plain HTTP only; use the broker's `http` listener (loopback by default), e.g. through an SSH tunnel"
        );
    }
    if !base.starts_with("http://") {
        bail!("--server must be an http:// URL, e.g. http://127.0.0.1:8080");
    }
    Ok(base)
}

/// `"<status>: <code>: <message>"` from an error body.
fn describe_error(status: reqwest::StatusCode, body: &Value) -> String {
    match (body["error"].as_str(), body["message"].as_str()) {
        (Some(code), Some(message)) => format!("{status}: {code}: {message}"),
        _ => format!("{status}: {body}"),
    }
}

impl ApiClient {
    /// Resolves the token: `--token`, else a login with `--user` and
    /// `--password-stdin`, else `GATEHOUSE_TOKEN`.
    pub fn connect(args: &ApiArgs, config: &Config) -> anyhow::Result<ApiClient> {
        let base = base_url(args, config)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("creating the HTTP client")?;
        let mut client = ApiClient {
            base,
            http,
            token: String::new(),
            own_token: None,
        };
        if args.password_stdin && args.login_user.is_none() {
            bail!("--password-stdin needs --user");
        }
        match (&args.token, &args.login_user) {
            (Some(_), Some(_)) => bail!("give --token or --user, not both"),
            (Some(token), None) => client.token = token.clone(),
            (None, Some(user)) => {
                if !args.password_stdin {
                    bail!("--user needs --password-stdin (the password on standard input)");
                }
                let mut password = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut password)
                    .context("reading the password from standard input")?;
                let password = password.trim_end_matches(['\r', '\n']);
                client.login(user, password)?;
            }
            (None, None) => match std::env::var("GATEHOUSE_TOKEN") {
                Ok(token) if !token.is_empty() => client.token = token,
                _ => bail!(
                    "no credentials: give --token, set GATEHOUSE_TOKEN, or --user NAME --password-stdin"
                ),
            },
        }
        Ok(client)
    }

    fn login(&mut self, username: &str, password: &str) -> anyhow::Result<()> {
        let body = json!({"username": username, "password": password,
            "expireTimeInHours": ONE_CALL_TOKEN_HOURS, "label": "gatehouse cli"});
        let reply = self.send("POST", "/api/login", Some(&body), false)?;
        let (Some(token), Some(fingerprint)) =
            (reply["token"].as_str(), reply["fingerprint"].as_str())
        else {
            bail!("login: the answer has no token");
        };
        self.token = token.to_owned();
        self.own_token = Some(fingerprint.to_owned());
        Ok(())
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        authenticated: bool,
    ) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if authenticated {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .with_context(|| format!("cannot reach the admin API at {}", self.base))?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            bail!("{path}: {}", describe_error(status, &value));
        }
        Ok(value)
    }

    /// An authenticated call; the answer's JSON (`null` for none).
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.send(method, path, body.as_ref(), true)
    }

    /// Revokes the token this client logged in for, if any.
    pub fn close(self) {
        if let Some(fingerprint) = &self.own_token {
            let path = format!("/api/users/me/tokens/{fingerprint}");
            if let Err(e) = self.call("DELETE", &path, None) {
                eprintln!("warning: could not revoke the one-call token: {e:#}");
            }
        }
    }
}

#[derive(Args)]
pub struct RegistryArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: RegistryCommand,
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Let devices register (default `[registry] default_unlock_minutes`).
    Unlock {
        #[arg(long)]
        minutes: Option<u64>,
    },
    /// Stop accepting registrations.
    Lock,
    /// Show the lock state and the requests with their pairing codes.
    List {
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Grant USER's request; the new user gets exactly the roles given.
    Confirm {
        #[arg(value_name = "USER")]
        username: String,
        /// Role name or id (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Drop USER's request.
    Reject {
        #[arg(value_name = "USER")]
        username: String,
    },
}

/// Seconds from now until `until` (Unix milliseconds).
fn seconds_until(until: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    until.saturating_sub(now).div_ceil(1000)
}

fn print_status(status: &Value) {
    match status["unlockedUntil"].as_u64() {
        Some(until) => println!("unlocked for another {} s", seconds_until(until)),
        None => println!("locked"),
    }
}

fn print_requests(status: &Value) {
    let empty = Vec::new();
    let requests = status["pendingRequests"].as_array().unwrap_or(&empty);
    if requests.is_empty() {
        println!("no requests");
        return;
    }
    for r in requests {
        let text = |key: &str| r[key].as_str().unwrap_or("-").to_owned();
        let roles: Vec<&str> = r["roles"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{}\tcode={}\tfrom={}\tattempts={}\troles={}\tcontext={}",
            text("username"),
            text("method"),
            text("flow"),
            text("status"),
            text("pairingCode"),
            text("address"),
            r["attempts"].as_u64().unwrap_or(0),
            if roles.is_empty() {
                "-".to_owned()
            } else {
                roles.join(",")
            },
            text("context"),
        );
    }
}

pub fn registry(config: &Config, args: RegistryArgs) -> anyhow::Result<()> {
    let client = ApiClient::connect(&args.api, config)?;
    let result = run(&client, args.command);
    client.close();
    result
}

fn run(client: &ApiClient, command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Unlock { minutes } => {
            let body = match minutes {
                Some(0) => bail!("--minutes must be at least 1"),
                Some(m) => json!({"duration": m.saturating_mul(60_000)}),
                None => json!({}),
            };
            let status = client.call("POST", "/api/client-registry/unlock", Some(body))?;
            print_status(&status);
        }
        RegistryCommand::Lock => {
            let status = client.call("POST", "/api/client-registry/lock", None)?;
            print_status(&status);
        }
        RegistryCommand::List { json } => {
            let status = client.call("GET", "/api/client-registry", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
                print_requests(&status);
            }
        }
        RegistryCommand::Confirm { username, roles } => {
            let mut body = json!({"username": username});
            if !roles.is_empty() {
                body["roles"] = json!(roles);
            }
            let created = client.call("POST", "/api/client-registry/confirm", Some(body))?;
            println!(
                "confirmed `{username}` (user id {})",
                created["id"].as_str().unwrap_or("?")
            );
        }
        RegistryCommand::Reject { username } => {
            client.call(
                "POST",
                "/api/client-registry/reject",
                Some(json!({"username": username})),
            )?;
            println!("rejected `{username}`");
        }
    }
    Ok(())
}
