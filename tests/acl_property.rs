//! The compiled ACL tries must agree with the obvious definition: loop over
//! every rule and match or cover level by level.

use gatehouse::identity::acl::{Acl, Rule};
use proptest::prelude::*;

/// A small alphabet so that random patterns and topics collide often.
const LEVELS: &[&str] = &["a", "b", "$SYS", "", "$x", "+", "#"];

fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, l)| match *l {
            "#" => i == levels.len() - 1,
            "+" => true,
            _ => !l.contains(['+', '#']),
        })
}

fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

fn wildcard_first(pattern: &str) -> bool {
    pattern.starts_with('+') || pattern.starts_with('#')
}

/// Does `pattern` match the topic name `topic`?
fn matches(pattern: &str, topic: &str) -> bool {
    if topic.starts_with('$') && wildcard_first(pattern) {
        return false;
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    for (i, level) in p.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" if i < t.len() => {}
            _ if t.get(i) == Some(level) => {}
            _ => return false,
        }
    }
    p.len() == t.len()
}

/// Does `pattern` match every topic that `filter` matches?
fn covers(pattern: &str, filter: &str) -> bool {
    if filter.starts_with('$') && wildcard_first(pattern) {
        return false;
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let f: Vec<&str> = filter.split('/').collect();
    for (i, level) in p.iter().enumerate() {
        match (*level, f.get(i).copied()) {
            ("#", _) => return true,
            ("+", Some(l)) if l != "#" => {}
            (lit, Some(l)) if lit != "+" && l == lit => {}
            _ => return false,
        }
    }
    p.len() == f.len()
}

struct Naive(Vec<Rule>);

impl Naive {
    fn any(&self, pick: impl Fn(&Rule) -> bool, deny: bool, test: impl Fn(&str) -> bool) -> bool {
        self.0
            .iter()
            .any(|r| r.deny == deny && pick(r) && is_valid_filter(&r.pattern) && test(&r.pattern))
    }

    fn can_publish(&self, topic: &str) -> bool {
        is_valid_topic(topic)
            && self.any(|r| r.write, false, |p| matches(p, topic))
            && !self.any(|r| r.write, true, |p| matches(p, topic))
    }

    fn can_receive(&self, topic: &str) -> bool {
        is_valid_topic(topic)
            && self.any(|r| r.read, false, |p| matches(p, topic))
            && !self.any(|r| r.read, true, |p| matches(p, topic))
    }

    fn can_subscribe(&self, filter: &str) -> bool {
        is_valid_filter(filter)
            && self.any(|r| r.read, false, |p| covers(p, filter))
            && !self.any(|r| r.read, true, |p| covers(p, filter))
    }
}

fn path(max_levels: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LEVELS), 1..=max_levels).prop_map(|l| l.join("/"))
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        path(4),
        any::<bool>(),
        any::<bool>(),
        prop::bool::weighted(0.25),
    )
        .prop_map(|(pattern, read, write, deny)| Rule {
            pattern,
            read,
            write,
            deny,
        })
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn agrees_with_naive(rules in prop::collection::vec(rule(), 0..10), inputs in prop::collection::vec(path(5), 1..16)) {
        let acl = Acl::compile(rules.clone());
        let naive = Naive(rules);
        prop_assert_eq!(acl.rule_count(), naive.0.iter().filter(|r| is_valid_filter(&r.pattern)).count());
        for input in &inputs {
            prop_assert_eq!(acl.can_publish(input), naive.can_publish(input), "publish {:?}", input);
            prop_assert_eq!(acl.can_receive(input), naive.can_receive(input), "receive {:?}", input);
            prop_assert_eq!(acl.can_subscribe(input), naive.can_subscribe(input), "subscribe {:?}", input);
        }
    }

    #[test]
    fn covered_filters_only_reach_allowed_topics(rules in prop::collection::vec(rule(), 0..10), filter in path(4), topic in path(5)) {
        // Coverage soundness: a subscribable filter's topics are all receivable
        // unless a narrower deny removes them at delivery.
        let acl = Acl::compile(rules.clone());
        let no_deny = Acl::compile(rules.into_iter().filter(|r| !r.deny));
        if no_deny.can_subscribe(&filter) && is_valid_topic(&topic) && matches(&filter, &topic) {
            prop_assert!(no_deny.can_receive(&topic));
        }
        if acl.can_subscribe(&filter) {
            prop_assert!(no_deny.can_subscribe(&filter));
        }
    }

    #[test]
    fn allow_all_allows_everything(input in path(5)) {
        let acl = Acl::allow_all();
        prop_assert!(acl.can_publish(&input) && acl.can_receive(&input) && acl.can_subscribe(&input));
    }

    #[test]
    fn arbitrary_strings_do_not_panic(rules in prop::collection::vec(("\\PC{0,12}", any::<bool>(), any::<bool>(), any::<bool>()), 0..6), input in "\\PC{0,16}") {
        let rules: Vec<Rule> = rules.into_iter().map(|(pattern, read, write, deny)| Rule { pattern, read, write, deny }).collect();
        let acl = Acl::compile(rules.clone());
        let naive = Naive(rules);
        prop_assert_eq!(acl.can_publish(&input), naive.can_publish(&input));
        prop_assert_eq!(acl.can_subscribe(&input), naive.can_subscribe(&input));
    }
}
