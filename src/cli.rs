//! `gatehouse user ...` and `gatehouse role ...`: identity administration
//! on the store of a stopped broker.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::io::BufRead;

use gatehouse::Config;
use gatehouse::identity::{self, Directory, Effect, GrantMethod, NewUser, Operation, Permission};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Add {
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Role to assign (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// MQTT publish prefix, prepended verbatim to every published topic.
        #[arg(long)]
        prefix: Option<String>,
        /// Grant type (repeatable; default password).
        #[arg(long = "grant", value_enum)]
        grants: Vec<Grant>,
    },
    /// Set a user's password.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Delete a user.
    Del { name: String },
    /// Enable a user.
    Enable { name: String },
    /// Disable a user.
    Disable { name: String },
    /// Add a permission to a user.
    Grant(PermissionArgs),
    /// Remove a permission from a user.
    Revoke(PermissionArgs),
    /// Assign a role to a user.
    Assign { name: String, role: String },
    /// Remove a role from a user.
    Unassign { name: String, role: String },
}

#[derive(Subcommand)]
pub enum RoleCommand {
    /// Create a role.
    Add { name: String },
    /// Delete a role (and remove it from every user).
    Del { name: String },
    /// Add a permission to a role.
    Grant(PermissionArgs),
    /// Remove a permission from a role.
    Revoke(PermissionArgs),
    /// List roles with their permissions.
    List,
}

#[derive(Args)]
pub struct PermissionArgs {
    /// User or role name.
    name: String,
    #[arg(long, value_enum)]
    context: ContextArg,
    /// Topic pattern (`+`, `#`, `%u`, `%c`); http resources start with `/`.
    #[arg(long)]
    resource: String,
    #[arg(long, value_enum)]
    operation: OperationArg,
    /// A deny permission, which wins over allows.
    #[arg(long)]
    deny: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Grant {
    Password,
    Certificate,
}

#[derive(Clone, Copy, ValueEnum)]
enum ContextArg {
    Mqtt,
    Http,
}

#[derive(Clone, Copy, ValueEnum)]
enum OperationArg {
    Read,
    Write,
    #[value(name = "readWrite", alias = "readwrite", alias = "read-write")]
    ReadWrite,
}

impl PermissionArgs {
    fn permission(&self) -> Permission {
        Permission {
            resource: self.resource.clone(),
            operation: match self.operation {
                OperationArg::Read => Operation::Read,
                OperationArg::Write => Operation::Write,
                OperationArg::ReadWrite => Operation::ReadWrite,
            },
            context: match self.context {
                ContextArg::Mqtt => identity::Context::Mqtt,
                ContextArg::Http => identity::Context::Http,
            },
            effect: if self.deny {
                Effect::Deny
            } else {
                Effect::Allow
            },
        }
    }
}

fn open(config: &Config) -> anyhow::Result<std::sync::Arc<Directory>> {
    let store = gatehouse::broker::open_store(config)?;
    Ok(gatehouse::broker::open_directory(config, store)?)
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if !from_stdin {
        bail!("pass the password on standard input with --password-stdin");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        bail!("empty password on standard input");
    }
    Ok(password)
}

fn describe(p: &Permission) -> String {
    let deny = if p.effect == Effect::Deny {
        " (deny)"
    } else {
        ""
    };
    format!("{:?} {} {:?}{deny}", p.context, p.resource, p.operation).to_lowercase()
}

pub fn user(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    let directory = open(config)?;
    match command {
        UserCommand::Add {
            name,
            password_stdin,
            roles,
            prefix,
            grants,
        } => {
            let grants: Vec<GrantMethod> = grants
                .into_iter()
                .map(|g| match g {
                    Grant::Password => GrantMethod::Password,
                    Grant::Certificate => GrantMethod::Certificate,
                })
                .collect();
            let needs_password = grants.is_empty() || grants.contains(&GrantMethod::Password);
            let password = if needs_password || password_stdin {
                Some(read_password(password_stdin)?)
            } else {
                None
            };
            let user = directory.add_user(NewUser {
                username: name,
                password,
                roles,
                permissions: Vec::new(),
                mqtt_publish_prefix: prefix,
                grants,
            })?;
            println!("created user {} ({})", user.username, user.id);
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            directory.set_password(&name, &read_password(password_stdin)?)?;
            println!("password of {name} changed");
        }
        UserCommand::List => {
            let roles = directory.roles();
            for user in directory.users() {
                let role_names: Vec<&str> = user
                    .roles
                    .iter()
                    .filter_map(|id| roles.iter().find(|r| &r.id == id).map(|r| r.name.as_str()))
                    .collect();
                let grants: Vec<String> = user
                    .grant_types
                    .iter()
                    .map(|g| format!("{:?}", g.method).to_lowercase())
                    .collect();
                println!(
                    "{}\t{}\troles={}\tgrants={}\tprefix={}",
                    user.username,
                    if user.enabled { "enabled" } else { "disabled" },
                    role_names.join(","),
                    grants.join(","),
                    user.mqtt_publish_prefix.as_deref().unwrap_or("")
                );
                for p in &user.permissions {
                    println!("\t{}", describe(p));
                }
            }
        }
        UserCommand::Del { name } => {
            directory.delete_user(&name)?;
            println!("deleted user {name}");
        }
        UserCommand::Enable { name } => {
            directory.set_enabled(&name, true)?;
            println!("enabled user {name}");
        }
        UserCommand::Disable { name } => {
            directory.set_enabled(&name, false)?;
            println!("disabled user {name}");
        }
        UserCommand::Grant(args) => {
            directory.grant_user(&args.name, args.permission())?;
            println!(
                "granted {} to user {}",
                describe(&args.permission()),
                args.name
            );
        }
        UserCommand::Revoke(args) => {
            directory.revoke_user(&args.name, &args.permission())?;
            println!(
                "revoked {} from user {}",
                describe(&args.permission()),
                args.name
            );
        }
        UserCommand::Assign { name, role } => {
            directory.assign_role(&name, &role, true)?;
            println!("assigned role {role} to {name}");
        }
        UserCommand::Unassign { name, role } => {
            directory.assign_role(&name, &role, false)?;
            println!("removed role {role} from {name}");
        }
    }
    Ok(())
}

pub fn role(config: &Config, command: RoleCommand) -> anyhow::Result<()> {
    let directory = open(config)?;
    match command {
        RoleCommand::Add { name } => {
            directory.add_role(&name)?;
            println!("created role {name}");
        }
        RoleCommand::Del { name } => {
            directory.delete_role(&name)?;
            println!("deleted role {name}");
        }
        RoleCommand::Grant(args) => {
            directory.grant_role(&args.name, args.permission())?;
            println!(
                "granted {} to role {}",
                describe(&args.permission()),
                args.name
            );
        }
        RoleCommand::Revoke(args) => {
            directory.revoke_role(&args.name, &args.permission())?;
            println!(
                "revoked {} from role {}",
                describe(&args.permission()),
                args.name
            );
        }
        RoleCommand::List => {
            for role in directory.roles() {
                println!("{}", role.name);
                for p in &role.permissions {
                    println!("\t{}", describe(p));
                }
            }
        }
    }
    Ok(())
}
