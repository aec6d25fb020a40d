//! HTTP permissions, after Connectware: every admin API route is protected
//! by its path as a `context: http` resource, matched with MQTT wildcard
//! rules (`/api/users/#`). GET and HEAD need `read`, other methods
//! `write`; a deny permission wins. A user may always read itself and
//! change its own password, tokens and MFA. This is the one place that
//! decides; the HTTP layer only describes the request.

use super::directory::Directory;
use super::model::{Context, Effect, Operation, User};
use crate::protocol::topic;

/// The request, as the HTTP layer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The route template, e.g. `/api/users/{id}/tokens`.
    pub route: &'a str,
    /// The concrete path, percent-decoded, e.g. `/api/users/42/tokens`.
    pub path: &'a str,
    /// The `{id}` of a `/api/users/{id}/...` route.
    pub user_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("`{operation}` permission on http resource `{resource}` required")]
    Forbidden {
        operation: &'static str,
        resource: String,
    },
    #[error(
        "MFA enrolment is required first: this token may only enrol (POST /api/mfa/enroll, /api/mfa/confirm)"
    )]
    EnrolmentRequired,
}

/// Routes any signed-in user may call on themselves (`{id}` = own id or `me`).
const SELF_SERVICE: &[(&str, &str)] = &[
    ("GET", "/api/users/me"),
    ("GET", "/api/users/{id}"),
    ("PUT", "/api/users/{id}/password"),
    ("GET", "/api/users/{id}/tokens"),
    ("DELETE", "/api/users/{id}/tokens"),
    ("DELETE", "/api/users/{id}/tokens/{fingerprint}"),
];

/// Routes that always act on the caller (their own MFA).
const OWN: &[(&str, &str)] = &[
    ("POST", "/api/mfa/enroll"),
    ("POST", "/api/mfa/confirm"),
    ("POST", "/api/mfa/disable"),
    ("POST", "/api/mfa/backup-codes"),
];

/// What a token issued before a mandatory MFA enrolment may do.
const ENROL_ONLY: &[(&str, &str)] = &[
    ("GET", "/api/users/me"),
    ("POST", "/api/mfa/enroll"),
    ("POST", "/api/mfa/confirm"),
];

pub fn operation_for(method: &str) -> Operation {
    if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
        Operation::Read
    } else {
        Operation::Write
    }
}

fn listed(table: &[(&str, &str)], method: &str, route: &str) -> bool {
    let method = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    table
        .iter()
        .any(|(m, r)| m.eq_ignore_ascii_case(method) && *r == route)
}

/// Whether `user`'s current permissions (own and roles', read from the
/// directory now) allow `operation` on the http resource `path`.
pub fn permits(directory: &Directory, user: &User, path: &str, operation: Operation) -> bool {
    let mut allowed = false;
    let mut denied = false;
    directory.for_each_permission(user, |p| {
        if p.context != Context::Http
            || !(match operation {
                Operation::Read => p.operation.reads(),
                Operation::Write => p.operation.writes(),
                Operation::ReadWrite => p.operation == Operation::ReadWrite,
            })
            || !topic::matches(&p.resource, path)
        {
            return;
        }
        match p.effect {
            Effect::Allow => allowed = true,
            Effect::Deny => denied = true,
        }
    });
    allowed && !denied
}

/// The decision for one request by `user` (whose token is `enrol_only`
/// while a mandatory MFA enrolment is pending).
pub fn authorize(
    directory: &Directory,
    user: &User,
    enrol_only: bool,
    request: Request<'_>,
) -> Result<(), AccessError> {
    if enrol_only {
        return if listed(ENROL_ONLY, request.method, request.route) {
            Ok(())
        } else {
            Err(AccessError::EnrolmentRequired)
        };
    }
    let is_self = request.user_id.is_none_or(|id| id == "me" || id == user.id);
    if listed(OWN, request.method, request.route)
        || (is_self && listed(SELF_SERVICE, request.method, request.route))
    {
        return Ok(());
    }
    let operation = operation_for(request.method);
    // The path's levels are compared literally (a `+` or `#` in a path is
    // text, not a wildcard); the caller decodes percent-escapes first, so
    // an encoded path cannot slip past a deny rule.
    if !request.path.contains('\0') && permits(directory, user, request.path, operation) {
        Ok(())
    } else {
        Err(AccessError::Forbidden {
            operation: match operation {
                Operation::Read => "read",
                _ => "write",
            },
            resource: request.path.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{NewUser, PasswordPolicy, Permission};
    use std::sync::Arc;

    fn directory(dir: &std::path::Path) -> Directory {
        let store = Arc::new(
            crate::store::Store::open(
                dir,
                crate::config::Durability::Sync,
                std::time::Duration::from_millis(100),
            )
            .unwrap(),
        );
        Directory::open(store, PasswordPolicy::default(), "admin", true).unwrap()
    }

    fn http(resource: &str, operation: Operation, effect: Effect) -> Permission {
        Permission {
            resource: resource.into(),
            operation,
            context: Context::Http,
            effect,
        }
    }

    fn request<'a>(
        method: &'a str,
        route: &'a str,
        path: &'a str,
        id: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            method,
            route,
            path,
            user_id: id,
        }
    }

    #[test]
    fn wildcards_operations_deny_and_self_service() {
        let dir = tempfile::tempdir().unwrap();
        let d = directory(dir.path());
        let user = d
            .add_user(NewUser {
                username: "carol".into(),
                permissions: vec![
                    http("/api/roles/#", Operation::Read, Effect::Allow),
                    http("/api/users/+", Operation::ReadWrite, Effect::Allow),
                    http("/api/users/boss", Operation::ReadWrite, Effect::Deny),
                    // mqtt permissions never open http routes
                    Permission {
                        context: Context::Mqtt,
                        ..http("/api/audit", Operation::Read, Effect::Allow)
                    },
                ],
                ..NewUser::default()
            })
            .unwrap();
        let check = |r: Request<'_>| authorize(&d, &user, false, r).is_ok();
        assert!(check(request(
            "GET",
            "/api/roles/{id}",
            "/api/roles/x",
            None
        )));
        assert!(
            check(request("HEAD", "/api/roles", "/api/roles", None)),
            "`#` matches the parent"
        );
        assert!(
            !check(request("POST", "/api/roles", "/api/roles", None)),
            "read only"
        );
        assert!(check(request(
            "PUT",
            "/api/users/{id}",
            "/api/users/x",
            Some("x")
        )));
        assert!(!check(request(
            "GET",
            "/api/users/{id}/tokens",
            "/api/users/x/tokens",
            Some("x")
        )));
        assert!(
            !check(request(
                "GET",
                "/api/users/{id}",
                "/api/users/boss",
                Some("boss")
            )),
            "deny wins"
        );
        assert!(!check(request("GET", "/api/audit", "/api/audit", None)));
        assert!(
            check(request(
                "GET",
                "/api/users/{id}/tokens",
                &format!("/api/users/{}/tokens", user.id),
                Some(&user.id)
            )),
            "own tokens"
        );
        assert!(check(request(
            "PUT",
            "/api/users/{id}/password",
            "/api/users/me/password",
            Some("me")
        )));
        assert!(
            !check(request(
                "DELETE",
                "/api/users/{id}/mfa",
                "/api/users/me/mfa",
                Some("me")
            )),
            "admin only"
        );
        assert!(check(request(
            "POST",
            "/api/mfa/enroll",
            "/api/mfa/enroll",
            None
        )));
        // An enrol-only token may do nothing else.
        let enrol = |r: Request<'_>| authorize(&d, &user, true, r);
        assert!(
            enrol(request(
                "POST",
                "/api/mfa/confirm",
                "/api/mfa/confirm",
                None
            ))
            .is_ok()
        );
        assert_eq!(
            enrol(request("GET", "/api/roles/{id}", "/api/roles/x", None)),
            Err(AccessError::EnrolmentRequired)
        );
    }
}
