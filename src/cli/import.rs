//! `gatehouse import mosquitto`: a mosquitto password file, ACL file and
//! dynamic-security JSON into a stopped broker's store (hashes are taken
//! over as they are, which the admin API cannot do), with a report of
//! what could not be mapped.

use clap::Subcommand;
use std::path::{Path, PathBuf};

use super::{CliError, Ctx, Exit, Result, Target, output};
use gatehouse::identity::import::Plan;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// From mosquitto: password file, ACL file, dynamic-security JSON.
    Mosquitto {
        /// A `password_file` written by mosquitto_passwd.
        #[arg(long)]
        passwd: Option<PathBuf>,
        /// An `acl_file`.
        #[arg(long)]
        acl: Option<PathBuf>,
        /// The dynamic-security plugin's JSON file.
        #[arg(long)]
        dynsec: Option<PathBuf>,
        /// Show what would be created, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        let exit = if e.kind() == std::io::ErrorKind::NotFound {
            Exit::NotFound
        } else {
            Exit::Failed
        };
        CliError::new(exit, format!("{}: {e}", path.display()))
    })
}

pub fn import(ctx: &Ctx, command: ImportCommand) -> Result<()> {
    let ImportCommand::Mosquitto {
        passwd,
        acl,
        dynsec,
        dry_run,
    } = command;
    if passwd.is_none() && dynsec.is_none() {
        return Err(CliError::new(
            Exit::Usage,
            "give --passwd and/or --dynsec (users come from them; --acl adds their permissions)",
        ));
    }
    let mut plan = Plan::default();
    let syntax =
        |e: gatehouse::identity::import::ImportError| CliError::new(Exit::Usage, e.to_string());
    if let Some(path) = &passwd {
        plan.read_passwd(&read(path)?).map_err(syntax)?;
    }
    if let Some(path) = &dynsec {
        plan.read_dynsec(&read(path)?).map_err(syntax)?;
    }
    if let Some(path) = &acl {
        plan.read_acl(&read(path)?).map_err(syntax)?;
    }
    plan.settle();
    if dry_run {
        for (name, user) in &plan.users {
            output::line(format!(
                "user {name}: {} permission(s), roles [{}]{}",
                user.permissions.len(),
                user.roles.join(", "),
                if user.hash.is_none() {
                    ", no password"
                } else {
                    ""
                }
            ))?;
        }
        for (name, permissions) in &plan.roles {
            output::line(format!("role {name}: {} permission(s)", permissions.len()))?;
        }
        for note in &plan.notes {
            output::line(format!("note: {note}"))?;
        }
        return Ok(());
    }
    let local = Target::local_only(ctx, "`gatehouse import`")?;
    let report = plan.apply(&local.services, &local.actor)?;
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    output::line(format!(
        "created {} user(s): {}",
        report.users_created.len(),
        list(&report.users_created)
    ))?;
    output::line(format!(
        "created {} role(s): {}; updated: {}",
        report.roles_created.len(),
        list(&report.roles_created),
        list(&report.roles_updated)
    ))?;
    for note in &report.notes {
        output::line(format!("not mapped exactly: {note}"))?;
    }
    Ok(())
}
