//! `gatehouse user ...` and `gatehouse role ...`, on a running broker
//! (admin API) or a stopped one's store (the API's services).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::client::{ApiClient, encode};
use super::output::{self, s};
use super::{CliError, Ctx, Exit, Result, Target, read_password};
use gatehouse::identity::services::{CreateUser, UpdateUser, permission_id};
use gatehouse::identity::{self, Effect, GrantMethod, GrantType, Operation, Permission};

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user (password prompted, or --password-stdin).
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
    /// Set a user's password (prompted, or --password-stdin; for your own
    /// account through the API, the current password first, then the new).
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
    /// Disable a user (their connections close).
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

    /// The permission as the API takes it.
    fn body(&self) -> Value {
        let p = self.permission();
        let mut body = json!({
            "resource": p.resource,
            "operation": match p.operation {
                Operation::Read => "read",
                Operation::Write => "write",
                Operation::ReadWrite => "readWrite",
            },
            "context": match p.context {
                identity::Context::Mqtt => "mqtt",
                identity::Context::Http => "http",
            },
        });
        if self.deny {
            body["effect"] = json!("deny");
        }
        body
    }

    fn describe(&self) -> String {
        output::permission(&self.body())
    }
}

/// The user object named `name` (API).
fn api_user(api: &ApiClient, name: &str) -> Result<Value> {
    let mut found = api.get(&format!("/api/users?username%5Beq%5D={}", encode(name)))?;
    match found.as_array_mut().and_then(|a| a.pop()) {
        Some(user) => Ok(user),
        None => Err(CliError::new(
            Exit::NotFound,
            format!("user `{name}` not found"),
        )),
    }
}

fn api_role(api: &ApiClient, name: &str) -> Result<Value> {
    let mut found = api.get(&format!("/api/roles?name%5Beq%5D={}", encode(name)))?;
    match found.as_array_mut().and_then(|a| a.pop()) {
        Some(role) => Ok(role),
        None => Err(CliError::new(
            Exit::NotFound,
            format!("role `{name}` not found"),
        )),
    }
}

fn id(value: &Value) -> String {
    encode(value["id"].as_str().unwrap_or_default())
}

fn grant_types(grants: &[Grant]) -> Vec<GrantType> {
    grants
        .iter()
        .map(|g| GrantType {
            method: match g {
                Grant::Password => GrantMethod::Password,
                Grant::Certificate => GrantMethod::Certificate,
            },
            is_required: false,
        })
        .collect()
}

pub fn user(ctx: &Ctx, command: UserCommand) -> Result<()> {
    let target = Target::detect(ctx)?;
    let done = match (&target, command) {
        (_, UserCommand::List) => return list_users(ctx, &target),
        (
            target,
            UserCommand::Add {
                name,
                password_stdin,
                roles,
                prefix,
                grants,
            },
        ) => {
            let grants = grant_types(&grants);
            let needs_password =
                grants.is_empty() || grants.iter().any(|g| g.method == GrantMethod::Password);
            let password = if needs_password || password_stdin {
                Some(read_password(password_stdin, "Password", true)?)
            } else {
                None
            };
            match target {
                Target::Api(api) => {
                    let role_ids = roles
                        .iter()
                        .map(|r| Ok(api_role(api, r)?["id"].clone()))
                        .collect::<Result<Vec<Value>>>()?;
                    let mut body = json!({"username": name, "roles": role_ids});
                    if let Some(password) = password {
                        body["password"] = json!(password);
                    }
                    if let Some(prefix) = prefix {
                        body["mqttPublishPrefix"] = json!(prefix);
                    }
                    if !grants.is_empty() {
                        body["grantTypes"] = serde_json::to_value(
                            grants
                                .iter()
                                .map(
                                    |g| json!({"method": format!("{:?}", g.method).to_lowercase()}),
                                )
                                .collect::<Vec<_>>(),
                        )
                        .unwrap_or_default();
                    }
                    api.call("POST", "/api/users", Some(&body))?;
                }
                Target::Local(local) => {
                    let role_ids = roles
                        .iter()
                        .map(|r| Ok(local.role(r)?.id))
                        .collect::<Result<Vec<String>>>()?;
                    local.services.create_user(
                        &local.actor,
                        CreateUser {
                            username: name.clone(),
                            password,
                            mqtt_publish_prefix: prefix,
                            grant_types: grants,
                            role_ids,
                            ..CreateUser::default()
                        },
                    )?;
                }
            }
            format!("created user {name}")
        }
        (
            target,
            UserCommand::Passwd {
                name,
                password_stdin,
            },
        ) => {
            match target {
                Target::Api(api) => {
                    let user = api_user(api, &name)?;
                    let me = api.get("/api/users/me")?;
                    let mut body = json!({});
                    if me["id"] == user["id"] {
                        body["oldPassword"] =
                            json!(read_password(password_stdin, "Current password", false)?);
                    }
                    body["newPassword"] =
                        json!(read_password(password_stdin, "New password", true)?);
                    api.call(
                        "PUT",
                        &format!("/api/users/{}/password", id(&user)),
                        Some(&body),
                    )?;
                }
                Target::Local(local) => {
                    let user = local.user(&name)?;
                    let new = read_password(password_stdin, "New password", true)?;
                    local
                        .services
                        .change_password(&local.actor, &user.id, None, &new)?;
                }
            }
            format!("password of {name} changed")
        }
        (Target::Api(api), UserCommand::Del { name }) => {
            let user = api_user(api, &name)?;
            api.call("DELETE", &format!("/api/users/{}", id(&user)), None)?;
            format!("deleted user {name}")
        }
        (Target::Local(local), UserCommand::Del { name }) => {
            let user = local.user(&name)?;
            local.services.delete_user(&local.actor, &user.id)?;
            format!("deleted user {name}")
        }
        (target, UserCommand::Enable { name }) => {
            set_enabled(target, &name, true)?;
            format!("enabled user {name}")
        }
        (target, UserCommand::Disable { name }) => {
            set_enabled(target, &name, false)?;
            format!("disabled user {name}")
        }
        (Target::Api(api), UserCommand::Grant(args)) => {
            let user = api_user(api, &args.name)?;
            let path = format!("/api/users/{}/permissions", id(&user));
            api.call("POST", &path, Some(&args.body()))?;
            format!("granted {} to user {}", args.describe(), args.name)
        }
        (Target::Local(local), UserCommand::Grant(args)) => {
            let user = local.user(&args.name)?;
            local
                .services
                .add_user_permission(&local.actor, &user.id, args.permission())?;
            format!("granted {} to user {}", args.describe(), args.name)
        }
        (Target::Api(api), UserCommand::Revoke(args)) => {
            let user = api_user(api, &args.name)?;
            let path = format!(
                "/api/users/{}/permissions/{}",
                id(&user),
                permission_id(&args.permission())
            );
            api.call("DELETE", &path, None)?;
            format!("revoked {} from user {}", args.describe(), args.name)
        }
        (Target::Local(local), UserCommand::Revoke(args)) => {
            let user = local.user(&args.name)?;
            local.services.remove_user_permission(
                &local.actor,
                &user.id,
                &permission_id(&args.permission()),
            )?;
            format!("revoked {} from user {}", args.describe(), args.name)
        }
        (target, UserCommand::Assign { name, role }) => {
            assign(target, &name, &role, true)?;
            format!("assigned role {role} to {name}")
        }
        (target, UserCommand::Unassign { name, role }) => {
            assign(target, &name, &role, false)?;
            format!("removed role {role} from {name}")
        }
    };
    output::line(done)
}

fn set_enabled(target: &Target, name: &str, enabled: bool) -> Result<()> {
    match target {
        Target::Api(api) => {
            let user = api_user(api, name)?;
            let body = json!({ "enabled": enabled });
            api.call("PUT", &format!("/api/users/{}", id(&user)), Some(&body))?;
        }
        Target::Local(local) => {
            let user = local.user(name)?;
            local.services.update_user(
                &local.actor,
                &user.id,
                UpdateUser {
                    enabled: Some(enabled),
                    ..UpdateUser::default()
                },
            )?;
        }
    }
    Ok(())
}

fn assign(target: &Target, name: &str, role: &str, on: bool) -> Result<()> {
    match target {
        Target::Api(api) => {
            let (user, role) = (api_user(api, name)?, api_role(api, role)?);
            if on {
                let body = json!({"roleId": role["id"]});
                api.call(
                    "POST",
                    &format!("/api/users/{}/roles", id(&user)),
                    Some(&body),
                )?;
            } else {
                let path = format!("/api/users/{}/roles/{}", id(&user), id(&role));
                api.call("DELETE", &path, None)?;
            }
        }
        Target::Local(local) => {
            let (user, role) = (local.user(name)?, local.role(role)?);
            local
                .services
                .set_user_role(&local.actor, &user.id, &role.id, on)?;
        }
    }
    Ok(())
}

fn list_users(ctx: &Ctx, target: &Target) -> Result<()> {
    let users: Vec<Value> = match target {
        Target::Api(api) => {
            let mut all = Vec::new();
            for page in 1u32.. {
                let Value::Array(batch) =
                    api.get(&format!("/api/users?pageNumber={page}&rowsPerPage=1000"))?
                else {
                    return Err(CliError::failed("/api/users: not a list"));
                };
                let last = batch.len() < 1000;
                all.extend(batch);
                if last {
                    break;
                }
            }
            all
        }
        Target::Local(local) => {
            let mut users = local.directory.users();
            users.sort_by(|a, b| a.username.cmp(&b.username));
            users.iter().map(|u| local.user_json(u)).collect()
        }
    };
    if ctx.json {
        return output::json(&Value::Array(users));
    }
    let names = |list: &Value, key: &str| -> String {
        list.as_array()
            .map(|a| a.iter().map(|v| s(v, key)).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            let permissions: Vec<String> = u["permissions"]
                .as_array()
                .map(|a| a.iter().map(output::permission).collect())
                .unwrap_or_default();
            vec![
                s(u, "username"),
                if u["enabled"] == true {
                    "enabled"
                } else {
                    "disabled"
                }
                .into(),
                names(&u["roles"], "name"),
                names(&u["grantTypes"], "method"),
                s(u, "mqttPublishPrefix"),
                if u["mfa_is_enrolled"] == true {
                    "on"
                } else {
                    "off"
                }
                .into(),
                permissions.join("; "),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "STATUS",
            "ROLES",
            "GRANTS",
            "PREFIX",
            "MFA",
            "PERMISSIONS",
        ],
        &rows,
    )
}

pub fn role(ctx: &Ctx, command: RoleCommand) -> Result<()> {
    let target = Target::detect(ctx)?;
    let done = match (&target, command) {
        (target, RoleCommand::List) => return list_roles(ctx, target),
        (Target::Api(api), RoleCommand::Add { name }) => {
            api.call("POST", "/api/roles", Some(&json!({ "name": name })))?;
            format!("created role {name}")
        }
        (Target::Local(local), RoleCommand::Add { name }) => {
            local
                .services
                .create_role(&local.actor, &name, Vec::new(), None)?;
            format!("created role {name}")
        }
        (Target::Api(api), RoleCommand::Del { name }) => {
            let role = api_role(api, &name)?;
            api.call("DELETE", &format!("/api/roles/{}", id(&role)), None)?;
            format!("deleted role {name}")
        }
        (Target::Local(local), RoleCommand::Del { name }) => {
            let role = local.role(&name)?;
            local.services.delete_role(&local.actor, &role.id)?;
            format!("deleted role {name}")
        }
        (Target::Api(api), RoleCommand::Grant(args)) => {
            let role = api_role(api, &args.name)?;
            let path = format!("/api/roles/{}/permissions", id(&role));
            api.call("POST", &path, Some(&args.body()))?;
            format!("granted {} to role {}", args.describe(), args.name)
        }
        (Target::Local(local), RoleCommand::Grant(args)) => {
            let role = local.role(&args.name)?;
            local
                .services
                .add_role_permission(&local.actor, &role.id, args.permission())?;
            format!("granted {} to role {}", args.describe(), args.name)
        }
        (Target::Api(api), RoleCommand::Revoke(args)) => {
            let role = api_role(api, &args.name)?;
            let path = format!(
                "/api/roles/{}/permissions/{}",
                id(&role),
                permission_id(&args.permission())
            );
            api.call("DELETE", &path, None)?;
            format!("revoked {} from role {}", args.describe(), args.name)
        }
        (Target::Local(local), RoleCommand::Revoke(args)) => {
            let role = local.role(&args.name)?;
            local.services.remove_role_permission(
                &local.actor,
                &role.id,
                &permission_id(&args.permission()),
            )?;
            format!("revoked {} from role {}", args.describe(), args.name)
        }
    };
    output::line(done)
}

fn list_roles(ctx: &Ctx, target: &Target) -> Result<()> {
    let roles: Vec<Value> = match target {
        Target::Api(api) => match api.get("/api/roles")? {
            Value::Array(roles) => roles,
            _ => return Err(CliError::failed("/api/roles: not a list")),
        },
        Target::Local(local) => {
            let mut roles = local.directory.roles();
            roles.sort_by(|a, b| a.name.cmp(&b.name));
            roles.iter().map(|r| local.role_json(r)).collect()
        }
    };
    if ctx.json {
        return output::json(&Value::Array(roles));
    }
    let rows: Vec<Vec<String>> = roles
        .iter()
        .map(|r| {
            let permissions: Vec<String> = r["permissions"]
                .as_array()
                .map(|a| a.iter().map(output::permission).collect())
                .unwrap_or_default();
            vec![s(r, "name"), permissions.join("; ")]
        })
        .collect();
    output::table(&["NAME", "PERMISSIONS"], &rows)
}
