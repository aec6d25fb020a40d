//! Compiled ACLs shared between connections of the same user.
//!
//! A user with 10,000 rules must not cost 10,000 rules of compiling (or of
//! copying permissions) and of memory per connection: connections of one
//! user share one `Arc<Acl>`, unless the rules use `%c`, which makes every
//! client id its own entry. The directory clears the cache on every change.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

use super::acl::Acl;

/// Beyond this many per-client entries the cache starts over (bounds
/// memory when many `%c` clients connect).
const MAX_ENTRIES: usize = 10_000;

enum Entry {
    /// No rule depends on the client id.
    Shared(Arc<Acl>),
    /// By client id.
    PerClient(HashMap<String, Arc<Acl>>),
}

#[derive(Default)]
pub struct AclCache {
    /// Entries, and the generation they belong to: bumped by `clear`, so an
    /// ACL compiled before a change is never stored after it.
    users: Mutex<(u64, HashMap<String, Entry>)>,
}

impl AclCache {
    /// The cached ACL for this user and client, if any, and whether it
    /// depends on the client id.
    pub fn get(&self, username: &str, client_id: &str) -> Option<(Arc<Acl>, bool)> {
        match self.users.lock().1.get(username)? {
            Entry::Shared(acl) => Some((acl.clone(), false)),
            Entry::PerClient(by_client) => by_client.get(client_id).map(|acl| (acl.clone(), true)),
        }
    }

    /// The generation to pass to [`insert`](Self::insert); read it before
    /// compiling.
    pub fn generation(&self) -> u64 {
        self.users.lock().0
    }

    /// Stores `acl` unless the directory changed since `generation`.
    pub fn insert(
        &self,
        generation: u64,
        username: &str,
        client_id: &str,
        per_client: bool,
        acl: Arc<Acl>,
    ) {
        let mut guard = self.users.lock();
        if guard.0 != generation {
            return;
        }
        let users = &mut guard.1;
        if users.len() >= MAX_ENTRIES {
            users.clear();
        }
        if !per_client {
            users.insert(username.to_owned(), Entry::Shared(acl));
            return;
        }
        let entry = users
            .entry(username.to_owned())
            .or_insert_with(|| Entry::PerClient(HashMap::new()));
        match entry {
            Entry::PerClient(by_client) => {
                if by_client.len() >= MAX_ENTRIES {
                    by_client.clear();
                }
                by_client.insert(client_id.to_owned(), acl);
            }
            Entry::Shared(_) => {
                *entry = Entry::PerClient(HashMap::from([(client_id.to_owned(), acl)]))
            }
        }
    }

    pub fn clear(&self) {
        let mut guard = self.users.lock();
        guard.0 += 1;
        guard.1.clear();
    }
}
