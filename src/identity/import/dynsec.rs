//! mosquitto's dynamic-security JSON: clients (PBKDF2 hashes kept as
//! `$7$`), roles with their ACLs, groups (flattened: a member gets the
//! group's roles), the anonymous group and the default access.
//!
//! ACL types: `publishClientSend` → write; `subscribeLiteral`,
//! `subscribePattern` and `publishClientReceive` → read (Gatehouse checks
//! read both when subscribing and on each delivery); `allow: false` → a
//! deny permission; `unsubscribe*` → nothing (Gatehouse never restricts
//! unsubscribing). Priorities are dropped: a deny always wins.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

use super::{ImportError, Plan, add_permission, permission};
use crate::identity::model::{Effect, Operation, validate_role_name};
use crate::identity::mosquitto_hash::MosquittoHash;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(default)]
    clients: Vec<Client>,
    #[serde(default)]
    groups: Vec<Group>,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    default_acl_access: Option<DefaultAccess>,
    #[serde(default)]
    anonymous_group: Option<String>,
}

#[derive(Deserialize)]
struct Client {
    username: String,
    #[serde(default)]
    clientid: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    iterations: Option<u32>,
    #[serde(default)]
    disabled: bool,
    #[serde(default)]
    roles: Vec<RoleRef>,
    #[serde(default)]
    groups: Vec<GroupRef>,
}

#[derive(Deserialize)]
struct RoleRef {
    rolename: String,
}

#[derive(Deserialize)]
struct GroupRef {
    groupname: String,
}

#[derive(Deserialize)]
struct ClientRef {
    username: String,
}

#[derive(Deserialize)]
struct Group {
    groupname: String,
    #[serde(default)]
    roles: Vec<RoleRef>,
    #[serde(default)]
    clients: Vec<ClientRef>,
}

#[derive(Deserialize)]
struct Role {
    rolename: String,
    #[serde(default)]
    acls: Vec<Acl>,
}

#[derive(Deserialize)]
struct Acl {
    acltype: String,
    topic: String,
    #[serde(default)]
    allow: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefaultAccess {
    #[serde(default)]
    publish_client_send: bool,
    #[serde(default = "yes")]
    publish_client_receive: bool,
    #[serde(default)]
    subscribe: bool,
}

fn yes() -> bool {
    true
}

impl Plan {
    /// Reads a dynamic-security JSON file.
    pub fn read_dynsec(&mut self, text: &str) -> Result<(), ImportError> {
        let file: File =
            serde_json::from_str(text).map_err(|e| ImportError::Json(e.to_string()))?;
        if let Some(d) = &file.default_acl_access {
            if d.publish_client_send || d.subscribe {
                self.notes.push(
                    "defaultACLAccess allows publishing or subscribing to everything: not mapped (Gatehouse denies what is not granted; grant it to a role instead)".into(),
                );
            }
            if !d.publish_client_receive {
                self.notes.push(
                    "defaultACLAccess denies receiving: in Gatehouse a client receives what it may read".into(),
                );
            }
        }
        for role in &file.roles {
            self.dynsec_role(role);
        }
        let mut group_roles: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut members: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for group in &file.groups {
            group_roles.insert(
                &group.groupname,
                group.roles.iter().map(|r| r.rolename.clone()).collect(),
            );
            for c in &group.clients {
                members
                    .entry(&c.username)
                    .or_default()
                    .insert(&group.groupname);
            }
        }
        if !file.groups.is_empty() {
            self.notes.push(
                "groups are flattened: each member is given its groups' roles (Gatehouse has no groups)".into(),
            );
        }
        for client in &file.clients {
            let hash = match (&client.password, &client.salt, client.iterations) {
                (Some(hash), Some(salt), Some(iterations)) => {
                    let text = MosquittoHash::pbkdf2_text(iterations, salt, hash);
                    match MosquittoHash::parse(&text) {
                        Ok(_) => Some(text),
                        Err(e) => {
                            self.notes.push(format!(
                                "client `{}`: password not imported ({e})",
                                client.username
                            ));
                            None
                        }
                    }
                }
                _ => {
                    self.notes.push(format!(
                        "client `{}` has no password: it cannot log in until one is set",
                        client.username
                    ));
                    None
                }
            };
            if let Some(id) = &client.clientid {
                self.notes.push(format!(
                    "client `{}` is bound to client id `{id}` in mosquitto: not mapped (Gatehouse does not tie users to client ids)",
                    client.username
                ));
            }
            let mut roles: Vec<String> = client.roles.iter().map(|r| r.rolename.clone()).collect();
            let groups = client.groups.iter().map(|g| g.groupname.as_str()).chain(
                members
                    .get(client.username.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            );
            for group in groups {
                for role in group_roles.get(group).into_iter().flatten() {
                    roles.push(role.clone());
                }
            }
            roles.sort();
            roles.dedup();
            roles.retain(|r| self.roles.contains_key(r));
            let Some(user) = self.plan_user(&client.username, hash) else {
                continue;
            };
            user.enabled = !client.disabled;
            user.roles.extend(roles);
        }
        if let Some(group) = &file.anonymous_group {
            let roles = group_roles.get(group.as_str()).cloned().unwrap_or_default();
            self.anonymous_roles.extend(roles);
            self.notes.push(format!(
                "the anonymous group `{group}`'s roles go to the built-in user `anonymous`; anonymous clients connect only with `[auth] allow_anonymous = true`"
            ));
        }
        Ok(())
    }

    fn dynsec_role(&mut self, role: &Role) {
        if let Err(e) = validate_role_name(&role.rolename) {
            self.notes
                .push(format!("role `{}` not imported: {e}", role.rolename));
            return;
        }
        let mut list = Vec::new();
        let subscribed: BTreeSet<&str> = role
            .acls
            .iter()
            .filter(|a| a.allow && a.acltype.starts_with("subscribe"))
            .map(|a| a.topic.as_str())
            .collect();
        for acl in &role.acls {
            let where_ = format!("role `{}`, {} {}", role.rolename, acl.acltype, acl.topic);
            let operation = match acl.acltype.as_str() {
                "publishClientSend" => Operation::Write,
                "publishClientReceive" => {
                    if acl.allow && !subscribed.contains(acl.topic.as_str()) {
                        self.notes.push(format!(
                            "{where_}: becomes read, which also lets clients subscribe to it"
                        ));
                    }
                    Operation::Read
                }
                "subscribeLiteral" | "subscribePattern" => {
                    if acl.acltype == "subscribeLiteral" && acl.topic.contains(['+', '#']) {
                        self.notes.push(format!(
                            "{where_}: a literal filter becomes a wildcard permission (wider)"
                        ));
                    }
                    Operation::Read
                }
                "unsubscribeLiteral" | "unsubscribePattern" => {
                    if !acl.allow {
                        self.notes.push(format!(
                            "{where_}: not mapped (Gatehouse never restricts unsubscribing)"
                        ));
                    }
                    continue;
                }
                other => {
                    self.notes.push(format!(
                        "{where_}: unknown ACL type `{other}`: not imported"
                    ));
                    continue;
                }
            };
            let effect = if acl.allow {
                Effect::Allow
            } else {
                Effect::Deny
            };
            if effect == Effect::Deny {
                self.notes.push(format!(
                    "{where_} deny: priorities are not kept, a deny always wins in Gatehouse"
                ));
            }
            if let Some(p) = self.checked(&where_, permission(&acl.topic, operation, effect)) {
                add_permission(&mut list, p);
            }
        }
        let entry = self.roles.entry(role.rolename.clone()).or_default();
        for p in list {
            add_permission(entry, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Plan;
    use crate::identity::model::{Effect, Operation};

    #[test]
    fn clients_groups_roles_and_notes() {
        let json = r##"{
          "clients": [
            {"username": "dev-1", "password": "aGFzaA==", "salt": "c2FsdA==", "iterations": 101,
             "roles": [{"rolename": "r1"}], "groups": [{"groupname": "g"}], "clientid": "pinned"},
            {"username": "nopass", "disabled": true}
          ],
          "groups": [{"groupname": "g", "roles": [{"rolename": "r2"}], "clients": [{"username": "nopass"}]}],
          "roles": [
            {"rolename": "r1", "acls": [
              {"acltype": "publishClientSend", "topic": "a/#", "allow": true},
              {"acltype": "subscribePattern", "topic": "a/#", "allow": true},
              {"acltype": "publishClientReceive", "topic": "a/#", "allow": true},
              {"acltype": "unsubscribePattern", "topic": "#", "allow": true}]},
            {"rolename": "r2", "acls": [
              {"acltype": "publishClientSend", "topic": "b/secret", "allow": false}]}
          ],
          "defaultACLAccess": {"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
          "anonymousGroup": "g"
        }"##;
        let mut plan = Plan::default();
        plan.read_dynsec(json).unwrap();
        let dev = &plan.users["dev-1"];
        assert_eq!(dev.hash.as_deref(), Some("$7$101$c2FsdA==$aGFzaA=="));
        assert_eq!(dev.roles, vec!["r1".to_string(), "r2".to_string()]);
        let r1 = &plan.roles["r1"];
        assert_eq!(r1.len(), 1);
        assert_eq!(r1[0].operation, Operation::ReadWrite);
        assert_eq!(plan.roles["r2"][0].effect, Effect::Deny);
        let nopass = &plan.users["nopass"];
        assert!(!nopass.enabled && nopass.hash.is_none());
        assert_eq!(nopass.roles, vec!["r2".to_string()]);
        assert_eq!(plan.anonymous_roles, vec!["r2".to_string()]);
        let notes = plan.notes.join("\n");
        for needle in [
            "pinned",
            "no password",
            "flattened",
            "deny always wins",
            "anonymous",
        ] {
            assert!(notes.contains(needle), "{needle}: {notes}");
        }
        assert!(Plan::default().read_dynsec("{").is_err());
    }
}
