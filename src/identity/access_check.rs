//! "May user X read or write T?", answered the way the broker decides it
//! (the connection's compiled ACL for MQTT, the route matcher for HTTP),
//! together with every permission that matches and where it comes from:
//! the admin page's checker and effective-permission view, so the page
//! never reimplements topic matching.

use super::acl::{Acl, Rule};
use super::compile::{client_id_substitutable, substitute};
use super::directory::Directory;
use super::http_access;
use super::model::{Context, Effect, Operation, Permission, User};
use crate::protocol::topic::{is_valid_filter, is_valid_topic_name};

/// Where a permission of the user comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The user's own permissions.
    User,
    Role {
        id: String,
        name: String,
    },
}

/// One of the user's effective permissions, with its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub permission: Permission,
    pub source: Source,
}

/// What to check. `operation` is `Read` or `Write` (`ReadWrite` is refused).
#[derive(Debug, Clone, Copy)]
pub struct AccessQuery<'a> {
    pub context: Context,
    pub operation: Operation,
    /// An MQTT topic (a filter with `+`/`#` for reads: a subscription),
    /// or an HTTP path.
    pub resource: &'a str,
    /// Resolves `%c`; without one, `%c` allow rules match nothing, as for
    /// a client id that cannot stand for `%c`.
    pub client_id: Option<&'a str>,
}

/// How the resource was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A topic name: a publish (write) or a delivery (read).
    Topic,
    /// A topic filter: a subscription (read).
    Filter,
    /// An admin API path.
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessAnswer {
    pub allowed: bool,
    pub checked: Checked,
    /// Every permission that matches the resource for this operation,
    /// allow and deny alike (a deny among them wins).
    pub matched: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessCheckError {
    #[error("operation: `read` or `write`")]
    Operation,
    #[error("resource: an http resource is a path starting with `/`")]
    Path,
    #[error("resource: not a valid MQTT topic or filter (a publish topic has no `+` or `#`)")]
    Topic,
    #[error("resource: at most 65,535 bytes")]
    TooLong,
}

impl Directory {
    /// The user's own permissions, then each role's, with the role named.
    pub fn grants(&self, user: &User) -> Vec<Grant> {
        let mut out: Vec<Grant> = user
            .permissions
            .iter()
            .map(|p| Grant {
                permission: p.clone(),
                source: Source::User,
            })
            .collect();
        for id in &user.roles {
            if let Some(role) = self.role_by_id(id) {
                out.extend(role.permissions.into_iter().map(|p| Grant {
                    permission: p,
                    source: Source::Role {
                        id: role.id.clone(),
                        name: role.name.clone(),
                    },
                }));
            }
        }
        out
    }

    /// Whether `user` may do `query`, decided as the broker decides it.
    pub fn check_access(
        &self,
        user: &User,
        query: AccessQuery<'_>,
    ) -> Result<AccessAnswer, AccessCheckError> {
        if query.resource.len() > 65_535 {
            return Err(AccessCheckError::TooLong);
        }
        let write = match query.operation {
            Operation::Read => false,
            Operation::Write => true,
            Operation::ReadWrite => return Err(AccessCheckError::Operation),
        };
        let wanted = |p: &Permission| {
            p.context == query.context
                && if write {
                    p.operation.writes()
                } else {
                    p.operation.reads()
                }
        };
        let grants = self.grants(user);
        if query.context == Context::Http {
            if !query.resource.starts_with('/') || query.resource.contains('\0') {
                return Err(AccessCheckError::Path);
            }
            let allowed = http_access::permits(self, user, query.resource, query.operation);
            let matched = grants
                .into_iter()
                .filter(|g| {
                    wanted(&g.permission)
                        && crate::protocol::topic::matches(&g.permission.resource, query.resource)
                })
                .collect();
            return Ok(AccessAnswer {
                allowed,
                checked: Checked::Path,
                matched,
            });
        }
        let checked = if is_valid_topic_name(query.resource) {
            Checked::Topic
        } else if !write && is_valid_filter(query.resource) {
            Checked::Filter
        } else {
            return Err(AccessCheckError::Topic);
        };
        let client_id = query.client_id.unwrap_or("");
        let decide = |acl: &Acl| match (write, checked) {
            (true, _) => acl.can_publish(query.resource),
            (false, Checked::Filter) => acl.can_subscribe(query.resource),
            (false, _) => acl.can_receive(query.resource),
        };
        let allowed = decide(&self.compile_acl(user, client_id));
        // Each permission on its own, resolved as compile_acl resolves it
        // and read as an allow: does it cover this resource?
        let client = client_id_substitutable(client_id).then_some(client_id);
        let matched = grants
            .into_iter()
            .filter(|g| {
                let p = &g.permission;
                if !wanted(p)
                    || (client.is_none() && p.effect == Effect::Allow && p.resource.contains("%c"))
                {
                    return false;
                }
                decide(&Acl::compile([Rule {
                    pattern: substitute(&p.resource, &user.username, client),
                    read: true,
                    write: true,
                    deny: false,
                }]))
            })
            .collect();
        Ok(AccessAnswer {
            allowed,
            checked,
            matched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{NewUser, PasswordPolicy};
    use std::sync::Arc;

    fn perm(context: Context, resource: &str, operation: Operation, effect: Effect) -> Permission {
        Permission {
            resource: resource.into(),
            operation,
            context,
            effect,
        }
    }

    fn query(context: Context, operation: Operation, resource: &str) -> AccessQuery<'_> {
        AccessQuery {
            context,
            operation,
            resource,
            client_id: None,
        }
    }

    #[test]
    fn answers_as_the_broker_and_names_the_sources() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            crate::store::Store::open(
                dir.path(),
                crate::config::Durability::Sync,
                std::time::Duration::from_millis(100),
            )
            .unwrap(),
        );
        let d = Directory::open(store, PasswordPolicy::default(), "admin", true).unwrap();
        d.add_role("plant").unwrap();
        d.grant_role(
            "plant",
            perm(
                Context::Mqtt,
                "plant/#",
                Operation::ReadWrite,
                Effect::Allow,
            ),
        )
        .unwrap();
        let user = d
            .add_user(NewUser {
                username: "dev".into(),
                roles: vec!["plant".into()],
                permissions: vec![
                    perm(
                        Context::Mqtt,
                        "plant/secret/#",
                        Operation::Read,
                        Effect::Deny,
                    ),
                    perm(Context::Mqtt, "own/%u/%c", Operation::Write, Effect::Allow),
                    perm(
                        Context::Http,
                        "/api/roles/+",
                        Operation::Read,
                        Effect::Allow,
                    ),
                ],
                ..NewUser::default()
            })
            .unwrap();
        let check = |q| d.check_access(&user, q).unwrap();

        let a = check(query(Context::Mqtt, Operation::Write, "plant/a"));
        assert!(a.allowed);
        assert_eq!(a.checked, Checked::Topic);
        assert_eq!(a.matched.len(), 1);
        assert!(matches!(&a.matched[0].source, Source::Role { name, .. } if name == "plant"));

        let a = check(query(Context::Mqtt, Operation::Read, "plant/secret/x"));
        assert!(!a.allowed, "deny wins");
        assert_eq!(a.matched.len(), 2);
        assert!(a.matched.iter().any(|g| g.source == Source::User));

        let a = check(query(Context::Mqtt, Operation::Read, "plant/+"));
        assert_eq!((a.allowed, a.checked), (true, Checked::Filter));
        // A deny on part of a filter does not refuse the subscription (the
        // broker withholds those messages on delivery); one covering the
        // whole filter does.
        assert!(check(query(Context::Mqtt, Operation::Read, "plant/#")).allowed);
        assert!(!check(query(Context::Mqtt, Operation::Read, "plant/secret/+")).allowed);

        // %c needs a client id.
        assert!(!check(query(Context::Mqtt, Operation::Write, "own/dev/d1")).allowed);
        let with_client = AccessQuery {
            client_id: Some("d1"),
            ..query(Context::Mqtt, Operation::Write, "own/dev/d1")
        };
        let a = check(with_client);
        assert!(a.allowed);
        assert_eq!(a.matched.len(), 1);

        let a = check(query(Context::Http, Operation::Read, "/api/roles/x"));
        assert_eq!(
            (a.allowed, a.checked, a.matched.len()),
            (true, Checked::Path, 1)
        );
        assert!(!check(query(Context::Http, Operation::Write, "/api/roles/x")).allowed);

        let err = |q| d.check_access(&user, q).unwrap_err();
        assert_eq!(
            err(query(Context::Mqtt, Operation::Write, "plant/#")),
            AccessCheckError::Topic
        );
        assert_eq!(
            err(query(Context::Http, Operation::Read, "api")),
            AccessCheckError::Path
        );
        assert_eq!(
            err(query(Context::Mqtt, Operation::ReadWrite, "a")),
            AccessCheckError::Operation
        );
        let long = "a".repeat(65_536);
        assert_eq!(
            err(query(Context::Mqtt, Operation::Read, &long)),
            AccessCheckError::TooLong
        );
        assert_eq!(d.grants(&user).len(), 4);
    }
}
