//! Compiling a user's MQTT permissions into the ACL tries of one
//! connection: `%u` and `%c` resolved in one pass, and a deny rule never
//! silently dropped.

use std::sync::Arc;

use super::acl::{Acl, Rule};
use super::directory::Directory;
use super::model::{Context, Effect, Permission, User};

/// Whether `client_id` can stand in for `%c` without changing a pattern's
/// structure.
pub fn client_id_substitutable(client_id: &str) -> bool {
    !client_id.is_empty() && !client_id.contains(['+', '#', '/'])
}

/// `pattern` with `%u` and `%c` replaced in one pass, so that a user name
/// or client id that itself contains `%c` or `%u` is taken literally.
/// Without a usable client id (`None`), each level holding `%c` becomes
/// `+`: wider, which is only safe for a deny.
pub(super) fn substitute(pattern: &str, username: &str, client_id: Option<&str>) -> String {
    let mut out = String::with_capacity(pattern.len() + username.len());
    for (i, level) in pattern.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if client_id.is_none() && level.contains("%c") {
            out.push('+');
            continue;
        }
        let mut rest = level;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("%u") {
                out.push_str(username);
                rest = after;
            } else if let (Some(after), Some(id)) = (tail.strip_prefix("%c"), client_id) {
                out.push_str(id);
                rest = after;
            } else {
                out.push('%');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
    }
    out
}

impl Directory {
    /// The user's MQTT permissions compiled for one connection, resolving
    /// `%u` and `%c`; shared with the user's other connections when no
    /// rule depends on the client id. A client id that would change a
    /// pattern's structure (`+`, `#`, `/` or empty) makes `%c` allow rules
    /// match nothing and `%c` deny rules deny the whole level (a CONNECT
    /// with such a client id is refused when a deny needs it, see
    /// [`denies_by_client_id`](Self::denies_by_client_id)).
    pub fn compile_acl(&self, user: &User, client_id: &str) -> Arc<Acl> {
        self.compile_acl_for(user, client_id).0
    }

    /// Whether one of the user's MQTT deny rules names the client id (such
    /// a rule needs a client id it can be resolved with).
    pub fn denies_by_client_id(&self, user: &User) -> bool {
        self.effective_permissions(user).iter().any(|p| {
            p.context == Context::Mqtt && p.effect == Effect::Deny && p.resource.contains("%c")
        })
    }

    /// [`compile_acl`](Self::compile_acl), and whether the result depends
    /// on the client id (a `%c` rule).
    pub fn compile_acl_for(&self, user: &User, client_id: &str) -> (Arc<Acl>, bool) {
        if let Some(cached) = self.acl_cache.get(&user.username, client_id) {
            return cached;
        }
        let generation = self.acl_cache.generation();
        // Re-read after taking the generation: a record fetched before a
        // change must not be cached as current.
        let current = self.user(&user.username);
        let user = current.as_ref().unwrap_or(user);
        let permissions: Vec<Permission> = self
            .effective_permissions(user)
            .into_iter()
            .filter(|p| p.context == Context::Mqtt)
            .collect();
        let per_client = permissions.iter().any(|p| p.resource.contains("%c"));
        let client = client_id_substitutable(client_id).then_some(client_id);
        let acl = Arc::new(Acl::compile(
            permissions
                .into_iter()
                .filter(|p| {
                    client.is_some() || p.effect == Effect::Deny || !p.resource.contains("%c")
                })
                .map(|p| Rule {
                    pattern: substitute(&p.resource, &user.username, client),
                    read: p.operation.reads(),
                    write: p.operation.writes(),
                    deny: p.effect == Effect::Deny,
                }),
        ));
        self.acl_cache.insert(
            generation,
            &user.username,
            client_id,
            per_client,
            acl.clone(),
        );
        (acl, per_client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_in_one_pass() {
        assert_eq!(
            substitute("u/%u/c/%c", "al%cice", Some("dev")),
            "u/al%cice/c/dev"
        );
        assert_eq!(substitute("a/%c/%u", "bob", Some("%u")), "a/%u/bob");
        assert_eq!(substitute("a/x%cy/b", "bob", Some("d")), "a/xdy/b");
        assert_eq!(substitute("50%/%x", "bob", Some("d")), "50%/%x");
    }

    #[test]
    fn an_unusable_client_id_widens_its_levels() {
        assert_eq!(substitute("dev/%c-x/#", "bob", None), "dev/+/#");
        assert_eq!(substitute("%u/%c", "bob", None), "bob/+");
        assert!(!client_id_substitutable("a/b"));
        assert!(!client_id_substitutable(""));
        assert!(client_id_substitutable("dev-1"));
    }
}
