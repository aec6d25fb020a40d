//! `gatehouse login` and `logout`: a token from `POST /api/login`, kept
//! 0600 in the user's configuration directory for the next commands.
//! Passwords and MFA codes are read from the terminal without echo, or
//! from standard input for scripts; never from the command line.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};

use super::client::{ApiClient, StoredLogin, configured_server, env, normalise, trust_for};
use super::output;
use super::{CliError, Ctx, Exit, Result, read_password, stdin_line};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// User name (asked when missing).
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of standard input (and the
    /// MFA code, when the account needs one, from the second).
    #[arg(long)]
    password_stdin: bool,
    /// Lifetime of the token in hours (the broker's `[http]
    /// token_max_hours` bounds it).
    #[arg(long, default_value_t = 12.0)]
    hours: f64,
}

/// Asks on the terminal (`/dev/tty`), without echo unless `echo`.
pub fn prompt(label: &str, echo: bool) -> Result<String> {
    use std::os::fd::AsRawFd;
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            CliError::new(
                Exit::Usage,
                "no terminal to ask on: pass secrets on standard input (--password-stdin)",
            )
        })?;
    let fd = tty.as_raw_fd();
    // SAFETY: a zeroed termios is a valid out-parameter for tcgetattr.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open terminal for the whole block.
    let hidden = !echo && unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if hidden {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above; restored below.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    // The prompt only once echo is off: whatever is typed after seeing it
    // is never shown.
    (&tty).write_all(label.as_bytes())?;
    let mut line = String::new();
    let read = BufReader::new(&tty).read_line(&mut line);
    if hidden {
        // SAFETY: restores what tcgetattr returned.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

pub fn login(ctx: &Ctx, args: LoginArgs) -> Result<()> {
    let server = match ctx.server.clone().or_else(|| env("GATEHOUSE_SERVER")) {
        Some(server) => normalise(&server)?,
        None => configured_server(&ctx.config),
    };
    if !(args.hours > 0.0 && args.hours.is_finite()) {
        return Err(CliError::new(Exit::Usage, "--hours must be positive"));
    }
    let username = match args.user {
        Some(user) => user,
        None if args.password_stdin => {
            return Err(CliError::new(Exit::Usage, "--password-stdin needs --user"));
        }
        None => prompt("User: ", true)?,
    };
    let password = read_password(args.password_stdin, "Password", false)?;
    let ca = trust_for(ctx, None, &server);
    let api = ApiClient::new(server.clone(), None, ca.as_deref())?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let mut body = json!({
        "username": username,
        "password": password,
        "expireTimeInHours": args.hours,
        "label": format!("gatehouse login {}", host.trim()).trim_end(),
    });
    let answer = match api.call("POST", "/api/login", Some(&body)) {
        Err(e) if e.message.contains("mfa_required") => {
            let otp = if args.password_stdin {
                stdin_line()?.ok_or_else(|| {
                    CliError::new(
                        Exit::Unauthenticated,
                        "this account needs an MFA code: put it on the second line of standard input",
                    )
                })?
            } else {
                prompt("MFA code (or a backup code): ", false)?
            };
            let otp = otp.trim().to_owned();
            let field = if otp.len() == 6 && otp.bytes().all(|b| b.is_ascii_digit()) {
                "otp"
            } else {
                "backupCode"
            };
            body[field] = json!(otp);
            api.call("POST", "/api/login", Some(&body))?
        }
        other => other?,
    };
    let field = |key: &str| -> Result<String> {
        answer[key]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| CliError::failed(format!("the login answer has no `{key}`")))
    };
    let stored = StoredLogin {
        server: server.clone(),
        username: username.clone(),
        token: field("token")?,
        fingerprint: field("fingerprint")?,
        expires_at: answer["expiresAt"].as_u64().unwrap_or(0),
        ca: ca.and_then(|ca| std::path::absolute(ca).ok()),
    };
    let path = stored.save()?;
    if answer["mfaEnrollmentRequired"] == Value::Bool(true) {
        eprintln!(
            "note: {username} must enrol MFA before anything else (POST /api/mfa/enroll, /api/mfa/confirm)"
        );
    }
    output::line(format!(
        "logged in to {server} as {username} until {} UTC (token in {})",
        output::time(&answer, "expiresAt"),
        path.display()
    ))
}

/// Revokes the stored token (best effort) and removes it.
pub fn logout(_ctx: &Ctx) -> Result<()> {
    let Some(stored) = StoredLogin::load()? else {
        return output::line("not logged in");
    };
    let api = ApiClient::new(
        stored.server.clone(),
        Some(stored.token.clone()),
        stored.ca.as_deref(),
    )?;
    let path = format!("/api/users/me/tokens/{}", stored.fingerprint);
    match api.call("DELETE", &path, None) {
        Ok(_) => {}
        Err(e) if e.exit == Exit::Unauthenticated => {}
        Err(e) => eprintln!("warning: the token could not be revoked: {e}"),
    }
    StoredLogin::remove()?;
    output::line(format!("logged out of {}", stored.server))
}
