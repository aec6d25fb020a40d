//! The subscription trie: one node per topic level, so matching a topic
//! costs O(levels × branching on `+`/`#`), independent of how many
//! subscriptions exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{FilterKey, Mailbox, SharedKey};
use crate::protocol::{MqttStr, SubscriptionOptions};

pub struct Subscription {
    pub mailbox: Arc<Mailbox>,
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
    /// The client has other plain subscriptions: a message matching
    /// several of them goes out once (see `Router::publish`).
    pub overlapping: bool,
}

impl Subscription {
    pub fn new(mailbox: Arc<Mailbox>, options: SubscriptionOptions, id: Option<u32>) -> Self {
        Subscription {
            mailbox,
            options,
            id,
            overlapping: false,
        }
    }
}

/// `$share/{group}/{filter}`: each message goes to one member.
struct SharedGroup {
    key: Arc<SharedKey>,
    members: Vec<Subscription>,
    next: AtomicUsize,
}

/// Literal levels hash with foldhash: fast, and seeded per process, so
/// clients cannot pick topic levels that collide.
type Children = HashMap<Box<str>, Node, foldhash::fast::RandomState>;

#[derive(Default)]
struct Node {
    literal: Children,
    /// The `+` and `#` children sit in their own slots: matching asks for
    /// them at every level, and a slot costs no hashing.
    plus: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subscriptions: Vec<Subscription>,
    groups: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.subscriptions.is_empty()
            && self.groups.is_empty()
    }

    fn child(&self, level: &str) -> Option<&Node> {
        match level {
            "+" => self.plus.as_deref(),
            "#" => self.hash.as_deref(),
            _ => self.literal.get(level),
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node> {
        match level {
            "+" => self.plus.as_deref_mut(),
            "#" => self.hash.as_deref_mut(),
            _ => self.literal.get_mut(level),
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node {
        match level {
            "+" => self.plus.get_or_insert_with(Box::default),
            "#" => self.hash.get_or_insert_with(Box::default),
            _ => self.literal.entry(level.into()).or_default(),
        }
    }

    fn remove_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            "#" => self.hash = None,
            _ => {
                self.literal.remove(level);
            }
        }
    }
}

#[derive(Default)]
pub struct SubscriptionTrie {
    root: Node,
    count: usize,
}

impl SubscriptionTrie {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Inserts or replaces; returns true when the client already had it.
    pub fn insert(&mut self, key: &FilterKey, sub: Subscription) -> bool {
        let mut node = &mut self.root;
        for level in key.filter.split('/') {
            node = node.child_or_insert(level);
        }
        let client = sub.mailbox.client_id().clone();
        let list = match &key.group {
            None => &mut node.subscriptions,
            Some(group) => {
                let index = match node.groups.iter().position(|g| &g.key.group == group) {
                    Some(i) => i,
                    None => {
                        node.groups.push(SharedGroup {
                            key: Arc::new(SharedKey {
                                group: group.clone(),
                                filter: key.filter.clone(),
                            }),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        node.groups.len() - 1
                    }
                };
                &mut node.groups[index].members
            }
        };
        match list.iter_mut().find(|s| s.mailbox.client_id() == &client) {
            Some(existing) => {
                *existing = sub;
                true
            }
            None => {
                list.push(sub);
                self.count += 1;
                false
            }
        }
    }

    /// Removes a client's subscription; returns whether it existed.
    pub fn remove(&mut self, key: &FilterKey, client: &MqttStr) -> bool {
        let levels: Vec<&str> = key.filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, key.group.as_deref(), client);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Calls `f` for each subscription matching `topic`: every plain
    /// subscription, and one member per shared group.
    pub fn for_each_match<F>(&self, topic: &str, mut f: F)
    where
        F: FnMut(&Subscription, Option<&Arc<SharedKey>>),
    {
        let system = topic.starts_with('$');
        walk(&self.root, topic, true, system, &mut f);
    }

    /// One member of a shared group, preferring online ones and skipping
    /// `except` (the member that is leaving).
    pub fn pick_shared_member(
        &self,
        key: &SharedKey,
        except: Option<&MqttStr>,
    ) -> Option<&Subscription> {
        let mut node = &self.root;
        for level in key.filter.split('/') {
            node = node.child(level)?;
        }
        let group = node.groups.iter().find(|g| g.key.group == key.group)?;
        pick(group, except)
    }
}

fn pick<'a>(group: &'a SharedGroup, except: Option<&MqttStr>) -> Option<&'a Subscription> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    let start = group.next.fetch_add(1, Ordering::Relaxed);
    let eligible = |s: &&Subscription| except != Some(s.mailbox.client_id());
    (0..n)
        .map(|i| &group.members[(start + i) % n])
        .filter(eligible)
        .find(|s| s.mailbox.is_online())
        .or_else(|| {
            (0..n)
                .map(|i| &group.members[(start + i) % n])
                .find(eligible)
        })
}

fn walk<F>(node: &Node, rest: &str, at_root: bool, system: bool, f: &mut F)
where
    F: FnMut(&Subscription, Option<&Arc<SharedKey>>),
{
    let (level, tail) = match rest.split_once('/') {
        Some((level, tail)) => (level, Some(tail)),
        None => (rest, None),
    };
    // Wildcards at the first level never match `$` topics (MQTT 4.7.2).
    let wildcards = !(at_root && system);
    if let Some(hash) = node.hash.as_deref().filter(|_| wildcards) {
        emit(hash, f);
    }
    let mut visit = |child: &Node| match tail {
        Some(tail) => walk(child, tail, false, system, f),
        None => {
            emit(child, f);
            // `a/#` also matches `a`.
            if let Some(hash) = child.hash.as_deref() {
                emit(hash, f);
            }
        }
    };
    if let Some(child) = node.literal.get(level) {
        visit(child);
    }
    if let Some(plus) = node.plus.as_deref().filter(|_| wildcards) {
        visit(plus);
    }
}

fn emit<F>(node: &Node, f: &mut F)
where
    F: FnMut(&Subscription, Option<&Arc<SharedKey>>),
{
    for sub in &node.subscriptions {
        f(sub, None);
    }
    for group in &node.groups {
        if let Some(member) = pick(group, None) {
            f(member, Some(&group.key));
        }
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client: &MqttStr) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        let list = match group {
            None => &mut node.subscriptions,
            Some(group) => match node.groups.iter_mut().find(|g| &*g.key.group == group) {
                Some(g) => &mut g.members,
                None => return false,
            },
        };
        let before = list.len();
        list.retain(|s| s.mailbox.client_id() != client);
        let removed = list.len() != before;
        node.groups.retain(|g| !g.members.is_empty());
        return removed;
    };
    let Some(child) = node.child_mut(first) else {
        return false;
    };
    let removed = remove_at(child, rest, group, client);
    if child.is_empty() {
        node.remove_child(first);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::MailboxLimits;

    fn mailbox(id: &str) -> Arc<Mailbox> {
        let limits = MailboxLimits {
            max_messages: 10,
            max_bytes: 1 << 20,
        };
        let m = Arc::new(Mailbox::new(id.into(), limits));
        m.set_online(true);
        m
    }

    fn matches(trie: &SubscriptionTrie, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        trie.for_each_match(topic, |s, _| out.push(s.mailbox.client_id().to_string()));
        out.sort();
        out
    }

    #[test]
    fn wildcards_and_system_topics() {
        let mut trie = SubscriptionTrie::default();
        for (id, filter) in [("a", "a/+/c"), ("b", "a/#"), ("c", "#"), ("d", "$SYS/#")] {
            trie.insert(
                &FilterKey::parse(filter).unwrap(),
                Subscription::new(mailbox(id), Default::default(), None),
            );
        }
        assert_eq!(matches(&trie, "a/b/c"), ["a", "b", "c"]);
        assert_eq!(matches(&trie, "a"), ["b", "c"]);
        assert_eq!(matches(&trie, "$SYS/x"), ["d"]);
        assert!(trie.remove(&FilterKey::parse("a/#").unwrap(), &"b".into()));
        assert_eq!(matches(&trie, "a"), ["c"]);
        assert_eq!(trie.len(), 3);
    }

    #[test]
    fn shared_groups_deliver_once_round_robin() {
        let mut trie = SubscriptionTrie::default();
        let key = FilterKey::parse("$share/g/t").unwrap();
        for id in ["x", "y"] {
            trie.insert(
                &key,
                Subscription::new(mailbox(id), Default::default(), None),
            );
        }
        let first = matches(&trie, "t");
        let second = matches(&trie, "t");
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        assert_ne!(first, second);
    }
}
