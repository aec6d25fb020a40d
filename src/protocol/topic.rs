//! Topic name and topic filter rules shared by the router and the ACL code.

/// A topic name a client may publish to: non-empty, no wildcard characters.
pub fn is_valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#'])
}

/// A topic filter: `+` fills a whole level, `#` is a whole last level.
pub fn is_valid_filter(filter: &str) -> bool {
    if filter.is_empty() {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "#" => return levels.peek().is_none(),
            "+" => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// A parsed `$share/{group}/{filter}` subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

/// Splits a shared subscription. `Some(Err(()))` means it starts with
/// `$share/` but is not a valid shared subscription.
pub fn parse_shared(filter: &str) -> Option<Result<SharedFilter<'_>, ()>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Some(Err(()));
    };
    if group.is_empty() || group.contains(['+', '#']) || !is_valid_filter(inner) {
        return Some(Err(()));
    }
    Some(Ok(SharedFilter {
        group,
        filter: inner,
    }))
}

/// Whether `filter` matches `topic`. Filters starting with a wildcard do not
/// match topics starting with `$` (MQTT 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            _ => {
                if topic_levels.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// Whether every topic matched by `inner` is also matched by `outer`
/// (`a/#` covers `a/b/+`; `a/+` does not cover `a/#`).
pub fn filter_covers(outer: &str, inner: &str) -> bool {
    let mut inner_levels = inner.split('/');
    for level in outer.split('/') {
        match level {
            "#" => return true,
            "+" => match inner_levels.next() {
                None | Some("#") => return false,
                Some(_) => {}
            },
            _ => {
                if inner_levels.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    inner_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert!(is_valid_filter("a/+/#"));
        assert!(is_valid_filter("#"));
        assert!(!is_valid_filter("a/#/b"));
        assert!(!is_valid_filter("a+"));
        assert!(!is_valid_filter(""));
    }

    #[test]
    fn matching() {
        assert!(matches("a/+/c", "a/b/c"));
        assert!(matches("a/#", "a"));
        assert!(matches("a/#", "a/b/c"));
        assert!(!matches("a/+", "a/b/c"));
        assert!(!matches("#", "$SYS/x"));
        assert!(matches("$SYS/#", "$SYS/x"));
        assert!(matches("a//b", "a//b"));
    }

    #[test]
    fn covering() {
        assert!(filter_covers("a/#", "a/b/+"));
        assert!(!filter_covers("a/+", "a/#"));
        assert!(filter_covers("a/+", "a/b"));
        assert!(!filter_covers("a/b", "a/+"));
    }

    #[test]
    fn shared() {
        assert_eq!(
            parse_shared("$share/g/a/#"),
            Some(Ok(SharedFilter {
                group: "g",
                filter: "a/#"
            }))
        );
        assert_eq!(parse_shared("$share/g"), Some(Err(())));
        assert_eq!(parse_shared("a/b"), None);
    }
}
