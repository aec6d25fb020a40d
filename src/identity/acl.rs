//! Compiled ACLs: a connection's permissions turned into four topic tries
//! (read-allow, read-deny, write-allow, write-deny) so that a check costs
//! O(topic levels), not O(rules) — a user with 100k rules publishes as fast
//! as one with a single rule.
//!
//! Semantics follow MQTT filter matching: `+` is one level, `#` the rest
//! including the parent (`a/#` matches `a`), and a pattern whose first level
//! is a wildcard never matches a topic whose first level starts with `$`
//! (so `$SYS/#` needs an explicit `$SYS/...` permission). Deny wins over
//! allow.

use crate::protocol::topic::{is_valid_filter, is_valid_topic_name};
use std::collections::HashMap;

/// One permission after placeholder resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// An MQTT topic filter (`+`, `#` allowed); invalid ones are skipped.
    pub pattern: String,
    pub read: bool,
    pub write: bool,
    /// A deny rule removes what the allow rules of the same operation grant.
    pub deny: bool,
}

/// A connection's compiled permissions. Cheap to check, immutable once
/// built (swap a new one in to change permissions).
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// Short-circuits every check (the core without identities).
    all: bool,
    read_allow: Trie,
    read_deny: Trie,
    write_allow: Trie,
    write_deny: Trie,
    rules: usize,
}

impl Acl {
    /// Builds the tries. Patterns that are not valid MQTT filters are
    /// skipped: there is no sound reading of `a/#/b` or `a+` (the directory
    /// rejects such permissions on entry, so this only keeps compile total).
    pub fn compile<I: IntoIterator<Item = Rule>>(rules: I) -> Acl {
        let mut acl = Acl::default();
        for rule in rules {
            if !is_valid_filter(&rule.pattern) {
                continue;
            }
            acl.rules += 1;
            if rule.read {
                let trie = if rule.deny {
                    &mut acl.read_deny
                } else {
                    &mut acl.read_allow
                };
                trie.insert(&rule.pattern);
            }
            if rule.write {
                let trie = if rule.deny {
                    &mut acl.write_deny
                } else {
                    &mut acl.write_allow
                };
                trie.insert(&rule.pattern);
            }
        }
        acl
    }

    /// Every check returns true, `$` topics included. `rule_count` is 0.
    pub fn allow_all() -> Acl {
        Acl {
            all: true,
            ..Acl::default()
        }
    }

    /// Some write-allow pattern matches `topic` and no write-deny pattern
    /// does. Topic names with wildcards or empty ones are refused.
    pub fn can_publish(&self, topic: &str) -> bool {
        self.all || check_topic(&self.write_allow, &self.write_deny, topic)
    }

    /// As [`Acl::can_publish`] with the read tries; checked on every
    /// delivery, which is what makes a deny narrower than a subscription
    /// effective.
    pub fn can_receive(&self, topic: &str) -> bool {
        self.all || check_topic(&self.read_allow, &self.read_deny, topic)
    }

    /// Some read-allow pattern covers every topic `filter` can match, and no
    /// read-deny pattern covers the filter. Invalid filters are refused;
    /// `$share/group/` must already be stripped.
    pub fn can_subscribe(&self, filter: &str) -> bool {
        if self.all {
            return true;
        }
        is_valid_filter(filter)
            && self.read_allow.walk(filter, Mode::Cover)
            && !self.read_deny.walk(filter, Mode::Cover)
    }

    /// Number of rules with a valid pattern that went into the tries.
    pub fn rule_count(&self) -> usize {
        self.rules
    }
}

fn check_topic(allow: &Trie, deny: &Trie, topic: &str) -> bool {
    is_valid_topic_name(topic) && allow.walk(topic, Mode::Match) && !deny.walk(topic, Mode::Match)
}

/// Index of a node in [`Trie::nodes`]; the root is 0 and never a child, so
/// 0 doubles as "no `+` child".
type NodeId = u32;
const ROOT: NodeId = 0;

/// One pattern level. Nodes live in an arena so that dropping a trie built
/// from a 30 000-level pattern cannot recurse through the stack.
#[derive(Debug, Clone, Default)]
struct Node {
    /// Literal next levels.
    children: HashMap<Box<str>, NodeId>,
    /// The `+` child, or [`ROOT`] for none.
    plus: NodeId,
    /// A pattern ends here with `/#` (or is `#` at the root).
    hash: bool,
    /// A pattern ends exactly here.
    terminal: bool,
}

#[derive(Debug, Clone)]
struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Does some pattern match this topic name?
    Match,
    /// Does some pattern cover (match a superset of) this filter?
    Cover,
}

impl Trie {
    /// Adds a valid filter. Iterative: pattern depth is bounded only by the
    /// packet size.
    fn insert(&mut self, pattern: &str) {
        let mut node = ROOT as usize;
        for level in pattern.split('/') {
            match level {
                "#" => {
                    self.nodes[node].hash = true;
                    return;
                }
                "+" => {
                    let existing = self.nodes[node].plus;
                    node = if existing != ROOT {
                        existing as usize
                    } else {
                        let id = self.push_node();
                        self.nodes[node].plus = id;
                        id as usize
                    };
                }
                _ => {
                    node = match self.nodes[node].children.get(level) {
                        Some(&id) => id as usize,
                        None => {
                            let id = self.push_node();
                            self.nodes[node].children.insert(level.into(), id);
                            id as usize
                        }
                    };
                }
            }
        }
        self.nodes[node].terminal = true;
    }

    fn push_node(&mut self) -> NodeId {
        // More than 4 billion nodes would not fit in memory first.
        let id = NodeId::try_from(self.nodes.len()).unwrap_or(NodeId::MAX);
        self.nodes.push(Node::default());
        id
    }

    fn is_empty(&self) -> bool {
        let root = &self.nodes[ROOT as usize];
        root.children.is_empty() && root.plus == ROOT && !root.hash && !root.terminal
    }

    /// Depth-first search over (node, position in `input`) states. Only a
    /// literal child and the `+` child can both continue, so the pending
    /// states stay few; they sit on an inline stack (no allocation per
    /// check) that spills to the heap only for pathological depths.
    fn walk(&self, input: &str, mode: Mode) -> bool {
        if self.is_empty() {
            return false;
        }
        let dollar = input.starts_with('$');
        let end = input.len();
        let mut stack = Stack::new();
        stack.push(ROOT, 0);
        while let Some((id, pos)) = stack.pop() {
            let Some(node) = self.nodes.get(id as usize) else {
                continue;
            };
            // Wildcard patterns at the first level skip `$` topics.
            let wild_ok = pos != 0 || !dollar;
            if node.hash && wild_ok {
                // `#` matches the rest, including nothing (`a/#` ~ `a`), and
                // covers any remaining filter levels, `#` and `+` included.
                return true;
            }
            if pos > end {
                if node.terminal {
                    return true;
                }
                continue;
            }
            let level_end = input[pos..].find('/').map_or(end, |i| pos + i);
            let level = &input[pos..level_end];
            let next = level_end + 1;
            match (mode, level) {
                // Only a `#` pattern covers a `#` filter level (done above).
                (Mode::Cover, "#") => {}
                // A `+` filter level is covered by `+` only.
                (Mode::Cover, "+") => {
                    if node.plus != ROOT {
                        stack.push(node.plus, next);
                    }
                }
                _ => {
                    if node.plus != ROOT && wild_ok {
                        stack.push(node.plus, next);
                    }
                    if let Some(&child) = node.children.get(level) {
                        stack.push(child, next);
                    }
                }
            }
        }
        false
    }
}

const INLINE: usize = 32;

/// LIFO of pending search states: inline first, heap only beyond
/// [`INLINE`] entries.
struct Stack {
    inline: [(NodeId, usize); INLINE],
    len: usize,
    spill: Vec<(NodeId, usize)>,
}

impl Stack {
    fn new() -> Self {
        Stack {
            inline: [(ROOT, 0); INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, id: NodeId, pos: usize) {
        if let Some(slot) = self.inline.get_mut(self.len) {
            *slot = (id, pos);
            self.len += 1;
        } else {
            self.spill.push((id, pos));
        }
    }

    fn pop(&mut self) -> Option<(NodeId, usize)> {
        if let Some(state) = self.spill.pop() {
            return Some(state);
        }
        self.len = self.len.checked_sub(1)?;
        self.inline.get(self.len).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, read: bool, write: bool, deny: bool) -> Rule {
        Rule {
            pattern: pattern.into(),
            read,
            write,
            deny,
        }
    }

    fn rw(patterns: &[&str]) -> Acl {
        Acl::compile(patterns.iter().map(|p| rule(p, true, true, false)))
    }

    #[test]
    fn plus_matches_one_level() {
        let acl = rw(&["a/+/c"]);
        assert!(acl.can_publish("a/b/c"));
        assert!(acl.can_publish("a//c"));
        assert!(!acl.can_publish("a/b/c/d"));
        assert!(!acl.can_publish("a/c"));
        assert!(!acl.can_publish("a/b"));
    }

    #[test]
    fn hash_matches_rest_and_parent() {
        let acl = rw(&["a/#"]);
        assert!(acl.can_publish("a"));
        assert!(acl.can_publish("a/b"));
        assert!(acl.can_publish("a/b/c/d"));
        assert!(acl.can_publish("a/"));
        assert!(!acl.can_publish("b"));
        assert!(!acl.can_publish("ab"));
    }

    #[test]
    fn dollar_topics_need_explicit_permission() {
        let acl = rw(&["#", "+/x"]);
        assert!(acl.can_publish("a/b"));
        assert!(!acl.can_receive("$SYS/broker/uptime"));
        assert!(!acl.can_receive("$SYS/x"));
        assert!(!acl.can_subscribe("$SYS/#"));
        assert!(acl.can_subscribe("#"));
        let sys = rw(&["$SYS/#"]);
        assert!(sys.can_receive("$SYS/broker/uptime"));
        assert!(sys.can_receive("$SYS"));
        assert!(sys.can_subscribe("$SYS/+/uptime"));
        assert!(!sys.can_receive("a"));
        // Wildcards below the first level are not restricted.
        let nested = rw(&["a/+", "a/#"]);
        assert!(nested.can_receive("a/$x"));
    }

    #[test]
    fn deny_wins() {
        let acl = Acl::compile([
            rule("a/#", true, true, false),
            rule("a/secret/#", true, true, true),
            rule("a/ro", false, true, true),
        ]);
        assert!(acl.can_publish("a/b"));
        assert!(!acl.can_publish("a/secret"));
        assert!(!acl.can_publish("a/secret/x"));
        assert!(!acl.can_receive("a/secret/x"));
        assert!(!acl.can_publish("a/ro"));
        assert!(acl.can_receive("a/ro"));
        // Subscribing to the wider filter is fine; delivery filters.
        assert!(acl.can_subscribe("a/#"));
        assert!(!acl.can_subscribe("a/secret/+"));
        assert!(!acl.can_subscribe("a/secret"));
    }

    #[test]
    fn read_and_write_are_separate() {
        let acl = Acl::compile([
            rule("r/#", true, false, false),
            rule("w/#", false, true, false),
        ]);
        assert!(acl.can_receive("r/1") && !acl.can_publish("r/1"));
        assert!(acl.can_publish("w/1") && !acl.can_receive("w/1"));
        assert!(acl.can_subscribe("r/+") && !acl.can_subscribe("w/+"));
    }

    #[test]
    fn coverage() {
        let hash = rw(&["a/#"]);
        for f in ["a/b/+", "a/#", "a", "a/+/#", "a/b"] {
            assert!(hash.can_subscribe(f), "{f}");
        }
        assert!(!hash.can_subscribe("#"));
        assert!(!hash.can_subscribe("+/b"));
        let plus = rw(&["a/+"]);
        assert!(plus.can_subscribe("a/b"));
        assert!(plus.can_subscribe("a/+"));
        assert!(!plus.can_subscribe("a/#"));
        assert!(!plus.can_subscribe("a"));
        assert!(!plus.can_subscribe("a/b/c"));
        let lit = rw(&["a/b"]);
        assert!(lit.can_subscribe("a/b"));
        assert!(!lit.can_subscribe("a/+"));
        assert!(!lit.can_subscribe("a/#"));
        assert!(!lit.can_subscribe("a"));
        let all = rw(&["#"]);
        for f in ["#", "+", "a/+/#", "/", "+/$x"] {
            assert!(all.can_subscribe(f), "{f}");
        }
        assert!(!all.can_subscribe("$SYS/#"));
        assert!(!all.can_subscribe("$x"));
    }

    #[test]
    fn invalid_patterns_are_skipped() {
        let acl = rw(&["a/#/b", "a+", "", "x/#", "b#"]);
        assert_eq!(acl.rule_count(), 1);
        assert!(!acl.can_publish("a/q/b"));
        assert!(acl.can_publish("x/y"));
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let acl = rw(&["#"]);
        assert!(!acl.can_publish(""));
        assert!(!acl.can_publish("a/+"));
        assert!(!acl.can_receive("a/#"));
        assert!(!acl.can_subscribe(""));
        assert!(!acl.can_subscribe("a/#/b"));
        assert!(!acl.can_subscribe("a+"));
    }

    #[test]
    fn allow_all_and_empty() {
        let all = Acl::allow_all();
        assert!(all.can_publish("$SYS/x"));
        assert!(all.can_receive("a"));
        assert!(all.can_subscribe("$SYS/#"));
        assert_eq!(all.rule_count(), 0);
        let none = Acl::compile(Vec::new());
        assert!(!none.can_publish("a"));
        assert!(!none.can_subscribe("#"));
    }

    #[test]
    fn empty_levels() {
        let acl = rw(&["/+", "+/"]);
        assert!(acl.can_publish("/a"));
        assert!(acl.can_publish("a/"));
        assert!(acl.can_publish("/"));
        assert!(!acl.can_publish("a"));
    }

    #[test]
    fn deep_patterns_do_not_overflow() {
        let deep: String = vec!["a"; 40_000].join("/");
        let plus: String = vec!["+"; 40_000].join("/");
        let acl = Acl::compile([
            rule(&deep, true, true, false),
            rule(&plus, true, true, true),
        ]);
        assert!(!acl.can_publish(&deep));
        assert!(!acl.can_subscribe(&deep));
        let other = rw(&[&deep, &plus]);
        assert!(other.can_publish(&deep));
        assert!(other.can_subscribe(&plus));
        drop((acl, other));
    }
}
