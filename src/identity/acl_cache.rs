//! Compiled ACLs shared between connections of the same user.
//!
//! A user with 10,000 rules must not cost 10,000 rules of compiling and of
//! memory per connection: connections of one user share one `Arc<Acl>`,
//! unless the rules use `%c`, which makes every client id its own entry.
//! The directory clears the cache on every change.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use super::acl::Acl;

/// (username, client id when the rules depend on it).
type Key = (String, Option<String>);

/// Beyond this many entries the cache starts over (bounds memory when
/// many `%c` clients connect).
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct AclCache {
    entries: Mutex<HashMap<Key, Arc<Acl>>>,
}

impl AclCache {
    pub fn get_or_compile(&self, key: Key, compile: impl FnOnce() -> Acl) -> Arc<Acl> {
        if let Some(acl) = self.entries.lock().get(&key) {
            return acl.clone();
        }
        // Compile outside the lock: large rule sets take milliseconds.
        let acl = Arc::new(compile());
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.entry(key).or_insert(acl).clone()
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }
}
