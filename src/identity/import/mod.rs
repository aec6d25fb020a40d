//! Migration from mosquitto: a password file, an ACL file and a
//! dynamic-security JSON become a [`Plan`] of users (their hashes kept as
//! they are, see `mosquitto_hash`), roles and permissions, plus notes on
//! what could not be mapped exactly; [`Plan::apply`] creates them through
//! the audited services.
//!
//! ACL file: topic lines before any `user` line belong to anonymous
//! clients (Gatehouse's built-in `anonymous` user); `topic` lines after
//! `user NAME` become NAME's own permissions; `pattern` lines (with `%u`
//! and `%c`, which Gatehouse substitutes the same way) become the role
//! `mosquitto-patterns`, given to every imported user. `deny` becomes a
//! deny permission, which wins over allows in Gatehouse as in mosquitto.

mod apply;
mod dynsec;

pub use apply::Report;

use std::collections::BTreeMap;

use super::model::{
    Context, Effect, Operation, Permission, validate_permission, validate_username,
};
use super::mosquitto_hash::MosquittoHash;

/// The role `pattern` lines become.
pub const PATTERN_ROLE: &str = "mosquitto-patterns";

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: &'static str,
        line: usize,
        reason: String,
    },
    #[error("dynamic-security file: {0}")]
    Json(String),
}

/// A user to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedUser {
    /// A mosquitto hash (`$6$`/`$7$`); `None`: no password was found.
    pub hash: Option<String>,
    pub enabled: bool,
    pub permissions: Vec<Permission>,
    /// Role names.
    pub roles: Vec<String>,
}

/// Everything an import would create, and what it could not map.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub users: BTreeMap<String, PlannedUser>,
    /// Role name → permissions.
    pub roles: BTreeMap<String, Vec<Permission>>,
    /// Permissions of anonymous clients (the built-in user `anonymous`).
    pub anonymous: Vec<Permission>,
    pub anonymous_roles: Vec<String>,
    /// Permissions for users not in the password or dynamic-security
    /// files (applied when such a user already exists in Gatehouse).
    pub orphans: BTreeMap<String, Vec<Permission>>,
    /// What could not be mapped (or was mapped wider or narrower).
    pub notes: Vec<String>,
}

fn permission(resource: &str, operation: Operation, effect: Effect) -> Permission {
    Permission {
        resource: resource.to_owned(),
        operation,
        context: Context::Mqtt,
        effect,
    }
}

/// Adds `p` unless present; read + write on one topic become readWrite.
pub(crate) fn add_permission(list: &mut Vec<Permission>, p: Permission) {
    if list.contains(&p) {
        return;
    }
    let other = match p.operation {
        Operation::Read => Some(Operation::Write),
        Operation::Write => Some(Operation::Read),
        Operation::ReadWrite => None,
    };
    if let Some(other) = other {
        let twin = Permission {
            operation: other,
            ..p.clone()
        };
        if let Some(found) = list.iter_mut().find(|q| **q == twin) {
            found.operation = Operation::ReadWrite;
            return;
        }
        let merged = Permission {
            operation: Operation::ReadWrite,
            ..p.clone()
        };
        if list.contains(&merged) {
            return;
        }
    }
    list.push(p);
}

impl Plan {
    /// Reads a mosquitto password file (`name:hash` per line).
    pub fn read_passwd(&mut self, text: &str) -> Result<(), ImportError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, hash)) = line.split_once(':') else {
                return Err(ImportError::Syntax {
                    file: "password file",
                    line: n + 1,
                    reason: "expected `user:hash`".into(),
                });
            };
            if let Err(e) = MosquittoHash::parse(hash) {
                self.notes.push(format!(
                    "user `{name}`: password not imported ({e}); set one with `gatehouse user passwd {name}`"
                ));
                self.plan_user(name, None);
                continue;
            }
            self.plan_user(name, Some(hash.to_owned()));
        }
        Ok(())
    }

    /// A user entry (kept only when the name is one Gatehouse accepts).
    fn plan_user(&mut self, name: &str, hash: Option<String>) -> Option<&mut PlannedUser> {
        if let Err(e) = validate_username(name) {
            self.notes.push(format!("user `{name}` not imported: {e}"));
            return None;
        }
        let user = self.users.entry(name.to_owned()).or_insert(PlannedUser {
            enabled: true,
            ..PlannedUser::default()
        });
        if hash.is_some() {
            user.hash = hash;
        }
        Some(user)
    }

    /// A permission from a mosquitto topic, or a note why not.
    fn checked(&mut self, where_: &str, p: Permission) -> Option<Permission> {
        match validate_permission(&p) {
            Ok(()) => Some(p),
            Err(e) => {
                self.notes.push(format!("{where_}: not imported: {e}"));
                None
            }
        }
    }

    /// Reads a mosquitto ACL file (`acl_file`).
    pub fn read_acl(&mut self, text: &str) -> Result<(), ImportError> {
        let mut current: Option<String> = None;
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let syntax = |reason: &str| ImportError::Syntax {
                file: "ACL file",
                line: n + 1,
                reason: reason.into(),
            };
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim_start();
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(syntax("`user` needs a name"));
                    }
                    current = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let (access, topic) = match rest.split_once(char::is_whitespace) {
                        Some((a @ ("read" | "write" | "readwrite" | "deny"), t)) => {
                            (a, t.trim_start())
                        }
                        _ => ("readwrite", rest),
                    };
                    if topic.is_empty() {
                        return Err(syntax("a topic is missing"));
                    }
                    let (operation, effect) = match access {
                        "read" => (Operation::Read, Effect::Allow),
                        "write" => (Operation::Write, Effect::Allow),
                        "deny" => (Operation::ReadWrite, Effect::Deny),
                        _ => (Operation::ReadWrite, Effect::Allow),
                    };
                    let where_ = format!("ACL line {}", n + 1);
                    if keyword == "topic" && topic.contains('%') {
                        self.notes.push(format!(
                            "{where_}: `topic {topic}`: mosquitto takes `%` literally in `topic` lines, Gatehouse would substitute it: not imported (use `pattern`)"
                        ));
                        continue;
                    }
                    let Some(p) = self.checked(&where_, permission(topic, operation, effect))
                    else {
                        continue;
                    };
                    match (keyword, &current) {
                        ("pattern", _) => add_permission(&mut patterns, p),
                        (_, None) => add_permission(&mut self.anonymous, p),
                        (_, Some(name)) => {
                            let list = self.orphans.entry(name.clone()).or_default();
                            add_permission(list, p);
                        }
                    }
                }
                other => {
                    return Err(syntax(&format!(
                        "unknown keyword `{other}` (expected user, topic or pattern)"
                    )));
                }
            }
        }
        if !patterns.is_empty() {
            let role = self.roles.entry(PATTERN_ROLE.into()).or_default();
            for p in patterns {
                add_permission(role, p);
            }
        }
        if !self.anonymous.is_empty() {
            self.notes.push(
                "topics before the first `user` line went to the built-in user `anonymous`; anonymous clients connect only with `[auth] allow_anonymous = true`".into(),
            );
        }
        Ok(())
    }

    /// Joins the ACL file's per-user permissions and the pattern role to
    /// the users that will be created (call after reading every file).
    pub fn settle(&mut self) {
        let orphans = std::mem::take(&mut self.orphans);
        for (name, permissions) in orphans {
            match self.users.get_mut(&name) {
                Some(user) => {
                    for p in permissions {
                        add_permission(&mut user.permissions, p);
                    }
                }
                None => {
                    self.orphans.insert(name, permissions);
                }
            }
        }
        if self.roles.contains_key(PATTERN_ROLE) {
            for user in self.users.values_mut() {
                if !user.roles.iter().any(|r| r == PATTERN_ROLE) {
                    user.roles.push(PATTERN_ROLE.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_file_maps_users_patterns_and_anonymous() {
        let mut plan = Plan::default();
        plan.read_passwd("alice:$7$101$c2FsdHNhbHQ=$aGFzaA==\nbo:$6$x$y\n")
            .unwrap();
        plan.read_acl(
            "# comment\ntopic read public/#\n\nuser alice\ntopic sensors/#\ntopic write cmd/+\ntopic read cmd/+\ntopic deny sensors/secret\ntopic read a/%u\nuser ghost\ntopic x/y\npattern readwrite devices/%u/%c/#\n",
        )
        .unwrap();
        plan.settle();
        let alice = &plan.users["alice"];
        let ops: Vec<(&str, Operation, Effect)> = alice
            .permissions
            .iter()
            .map(|p| (p.resource.as_str(), p.operation, p.effect))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("sensors/#", Operation::ReadWrite, Effect::Allow),
                ("cmd/+", Operation::ReadWrite, Effect::Allow),
                ("sensors/secret", Operation::ReadWrite, Effect::Deny),
            ]
        );
        assert_eq!(alice.roles, vec![PATTERN_ROLE.to_string()]);
        assert_eq!(plan.roles[PATTERN_ROLE][0].resource, "devices/%u/%c/#");
        assert_eq!(plan.anonymous[0].resource, "public/#");
        assert!(plan.orphans.contains_key("ghost"));
        let notes = plan.notes.join("\n");
        assert!(notes.contains("user `bo` not imported"), "{notes}");
        assert!(notes.contains("a/%u"), "{notes}");
        assert!(Plan::default().read_acl("topic\n").is_err());
        assert!(Plan::default().read_acl("allow x\n").is_err());
    }
}
