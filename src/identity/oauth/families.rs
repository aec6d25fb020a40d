//! Refresh-token families (RFC 9700 §4.14.2): one per authorization, with
//! the generation of its current refresh token and the refreshes left.
//! A refresh token is `ghr.<family>.<generation>.<tag>`, the tag a keyed
//! hash of the other two, so the store holds no token and no hash an
//! attacker could test (the key is a file of its own). Each refresh
//! rotates the token (generation + 1); presenting an older generation is
//! reuse: the whole family and every access token it issued are revoked.
//!
//! A family ends at the latest `[oauth] refresh_absolute_lifetime_secs`
//! after it started and `refresh_idle_lifetime_secs` after its last use,
//! however many refreshes it has left. A user holds at most
//! `max_grants_per_user` families and a client `max_grants_per_client`: a
//! new one ends the least recently used beyond that.

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

use super::{GrantKind, OAuthError, OAuthOpenError, hex, same};
use crate::config::OAuth as OAuthConfig;
use crate::router::now_millis;
use crate::store::{IdentityTable, Store, StoreError};

const PREFIX: &str = "ghr";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Family {
    /// Also the `grant` of the access tokens issued under it.
    pub id: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    /// Generation of the one valid refresh token.
    pub generation: u32,
    /// Refreshes left; `None`: unlimited.
    pub left: Option<u32>,
    pub created_at: u64,
    /// No refresh left: kept until then (Unix ms, the last access token's
    /// expiry) only so that a replayed token still revokes the grant.
    #[serde(default)]
    pub keep_until: Option<u64>,
    /// Unix ms of the last refresh (0: never refreshed, see `created_at`).
    #[serde(default)]
    pub last_used: u64,
    /// The grant that started it (`authorization_code` or `password`): a
    /// refresh needs the client to still allow it.
    #[serde(default)]
    pub origin: Option<GrantKind>,
}

impl Family {
    /// Unix ms of the start or the last refresh.
    pub fn used_at(&self) -> u64 {
        self.last_used.max(self.created_at)
    }
}

/// How long families live and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub absolute_ms: u64,
    pub idle_ms: u64,
    pub per_user: usize,
    pub per_client: usize,
}

impl Limits {
    pub fn of(config: &OAuthConfig) -> Limits {
        Limits {
            absolute_ms: u64::from(config.refresh_absolute_lifetime_secs) * 1000,
            idle_ms: u64::from(config.refresh_idle_lifetime_secs) * 1000,
            per_user: config.max_grants_per_user as usize,
            per_client: config.max_grants_per_client as usize,
        }
    }

    /// The absolute end of `family` (Unix ms).
    pub fn ends_at(&self, family: &Family) -> u64 {
        family.created_at.saturating_add(self.absolute_ms)
    }

    /// When `family` ends unless used before (Unix ms).
    pub fn idle_until(&self, family: &Family) -> u64 {
        family
            .used_at()
            .saturating_add(self.idle_ms)
            .min(self.ends_at(family))
    }

    /// Past its lifetime, or (exhausted) past the time it was kept for.
    fn over(&self, family: &Family, now: u64) -> bool {
        now >= self.idle_until(family) || family.keep_until.is_some_and(|t| t <= now)
    }
}

/// The outcome of presenting a well-formed refresh token of a live family
/// (no `Debug`: it carries a refresh token).
pub enum Rotation {
    /// Rotated: the family as it is now, and its next refresh token (none
    /// when no refresh is left).
    Next {
        family: Family,
        token: Option<String>,
    },
    /// An already-used token: the caller revokes the family.
    Reused(Family),
}

pub struct Families {
    store: Arc<Store>,
    key: [u8; 32],
    pub limits: Limits,
    live: Mutex<HashMap<String, Family>>,
    /// A refresh holds its family's stripe from rotation until its access
    /// token is recorded, so a concurrent presentation of the same token
    /// (reuse) waits and then revokes that access token too.
    stripes: Vec<Mutex<()>>,
}

const STRIPES: usize = 64;

impl Families {
    /// Loads the families `keep` accepts (client and user still there),
    /// dropping the others and those past their time.
    pub fn open(
        store: Arc<Store>,
        key: [u8; 32],
        limits: Limits,
        keep: impl Fn(&Family) -> bool,
    ) -> Result<Families, OAuthOpenError> {
        let now = now_millis();
        let mut live = HashMap::new();
        let mut stale = Vec::new();
        for raw in store.load_identity(IdentityTable::OAuthGrants)? {
            let family: Family =
                serde_json::from_slice(&raw).map_err(|e| OAuthOpenError::Corrupt(e.to_string()))?;
            if keep(&family) && !limits.over(&family, now) {
                live.insert(family.id.clone(), family);
            } else {
                stale.push(family.id);
            }
        }
        let deletes: Vec<_> = stale
            .iter()
            .map(|id| (IdentityTable::OAuthGrants, id.as_str(), None))
            .collect();
        if !deletes.is_empty() {
            store.put_identity_batch(&deletes)?;
        }
        Ok(Families {
            store,
            key,
            limits,
            live: Mutex::new(live),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        })
    }

    fn tag(&self, id: &str, generation: u32) -> String {
        let text = format!("{id}.{generation}");
        hex(blake3::keyed_hash(&self.key, text.as_bytes()).as_bytes())
    }

    fn token(&self, family: &Family) -> String {
        let (id, generation) = (&family.id, family.generation);
        format!("{PREFIX}.{id}.{generation}.{}", self.tag(id, generation))
    }

    fn put(&self, family: &Family) -> Result<(), StoreError> {
        let json = serde_json::to_vec(family).expect("family serialises");
        self.store
            .put_identity(IdentityTable::OAuthGrants, &family.id, Some(&json))
    }

    /// Serialises the refreshes of the family a token names (see
    /// `stripes`); `None` for a token that is not a genuine refresh token.
    pub fn serialize(&self, token: &str) -> Option<parking_lot::MutexGuard<'_, ()>> {
        let (id, _) = self.parse(token)?;
        let stripe = blake3::hash(id.as_bytes()).as_bytes()[0] as usize % STRIPES;
        Some(self.stripes[stripe].lock())
    }

    /// Starts the family `id` and returns its first refresh token and the
    /// ids of the families it ended, unless `check` (run under the lock:
    /// the grant was not revoked meanwhile) refuses. Beyond the caps, the
    /// user's (then the client's) least recently used family ends.
    pub fn start(
        &self,
        family: Family,
        check: impl FnOnce() -> Result<(), OAuthError>,
    ) -> Result<(String, Vec<String>), OAuthError> {
        let mut live = self.live.lock();
        check()?;
        let mut evict = Vec::new();
        for (cap, mine) in [
            (
                self.limits.per_user,
                &(|f: &Family| f.user_id == family.user_id) as &dyn Fn(&Family) -> bool,
            ),
            (self.limits.per_client, &|f: &Family| {
                f.client_id == family.client_id
            }),
        ] {
            let mut theirs: Vec<&Family> = live
                .values()
                .filter(|f| mine(f) && !evict.contains(&f.id))
                .collect();
            if theirs.len() >= cap {
                theirs.sort_by_key(|f| (f.used_at(), f.created_at));
                let extra = theirs.len() + 1 - cap;
                evict.extend(theirs.iter().take(extra).map(|f| f.id.clone()));
            }
        }
        let json = serde_json::to_vec(&family).expect("family serialises");
        let mut writes: Vec<_> = evict
            .iter()
            .map(|id| (IdentityTable::OAuthGrants, id.as_str(), None))
            .collect();
        writes.push((
            IdentityTable::OAuthGrants,
            family.id.as_str(),
            Some(&json[..]),
        ));
        self.store.put_identity_batch(&writes)?;
        for id in &evict {
            live.remove(id);
            tracing::info!(
                user_id = family.user_id,
                client_id = family.client_id,
                "OAuth grant beyond the cap ended (least recently used)"
            );
        }
        let token = self.token(&family);
        live.insert(family.id.clone(), family);
        Ok((token, evict))
    }

    /// A new family (not yet stored: see [`start`](Self::start)).
    pub fn new_family(
        id: &str,
        client_id: &str,
        user_id: &str,
        scope: &str,
        left: Option<u32>,
        origin: GrantKind,
    ) -> Family {
        let now = now_millis();
        Family {
            id: id.into(),
            client_id: client_id.into(),
            user_id: user_id.into(),
            scope: scope.into(),
            generation: 0,
            left,
            created_at: now,
            keep_until: None,
            last_used: now,
            origin: Some(origin),
        }
    }

    /// The family a refresh token belongs to, if its tag is genuine (for
    /// introspection and revocation: nothing changes).
    pub fn lookup(&self, token: &str) -> Option<(Family, bool)> {
        let (id, generation) = self.parse(token)?;
        let family = self.live.lock().get(id).cloned()?;
        let current = generation == family.generation
            && family.keep_until.is_none()
            && !self.limits.over(&family, now_millis());
        Some((family, current))
    }

    /// `(family id, generation)` of a token whose tag is genuine.
    fn parse<'a>(&self, token: &'a str) -> Option<(&'a str, u32)> {
        let mut parts = token.split('.');
        let (prefix, id, generation, tag) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() || id.len() != 32 || tag.len() != 64 {
            return None;
        }
        let generation: u32 = generation.parse().ok()?;
        same(&self.tag(id, generation), tag).then_some((id, generation))
    }

    /// Presents a refresh token for `client_id`. `check` vets the family
    /// (its user still there) before anything changes; `keep_until` is
    /// the expiry of the access token about to be issued, kept by a
    /// family that runs out of refreshes.
    pub fn rotate(
        &self,
        token: &str,
        client_id: &str,
        keep_until: u64,
        check: impl FnOnce(&Family) -> Result<(), OAuthError>,
    ) -> Result<Rotation, OAuthError> {
        let unknown = || OAuthError::grant("the refresh token is invalid, expired or revoked");
        let (id, generation) = self.parse(token).ok_or_else(unknown)?;
        let mut live = self.live.lock();
        let family = live.get(id).ok_or_else(unknown)?;
        let now = now_millis();
        if self.limits.over(family, now) {
            self.store
                .put_identity(IdentityTable::OAuthGrants, id, None)?;
            live.remove(id);
            return Err(unknown());
        }
        if family.client_id != client_id {
            return Err(OAuthError::grant(
                "the refresh token was issued to another client",
            ));
        }
        if generation != family.generation || family.keep_until.is_some() {
            return Ok(Rotation::Reused(family.clone()));
        }
        check(family)?;
        let mut next = family.clone();
        next.generation = next.generation.saturating_add(1);
        next.left = next.left.map(|n| n.saturating_sub(1));
        next.last_used = now;
        if next.left == Some(0) {
            next.keep_until = Some(keep_until);
        }
        self.put(&next)?;
        let token = next.keep_until.is_none().then(|| self.token(&next));
        live.insert(next.id.clone(), next.clone());
        Ok(Rotation::Next {
            family: next,
            token,
        })
    }

    /// Ends a family (durably first); absent is fine.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let mut live = self.live.lock();
        if live.contains_key(id) {
            self.store
                .put_identity(IdentityTable::OAuthGrants, id, None)?;
            live.remove(id);
        }
        Ok(())
    }

    /// Ends every family `select` picks (a user's, a client's, those past
    /// their time); returns their ids.
    pub fn remove_where(
        &self,
        select: impl Fn(&Family) -> bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut live = self.live.lock();
        let ids: Vec<String> = live
            .values()
            .filter(|f| select(f))
            .map(|f| f.id.clone())
            .collect();
        let deletes: Vec<_> = ids
            .iter()
            .map(|id| (IdentityTable::OAuthGrants, id.as_str(), None))
            .collect();
        if !deletes.is_empty() {
            self.store.put_identity_batch(&deletes)?;
        }
        for id in &ids {
            live.remove(id);
        }
        Ok(ids)
    }

    /// Ends the families past their lifetime and those `keep` refuses
    /// (their user or client is gone); returns how many.
    pub fn sweep(&self, keep: impl Fn(&Family) -> bool) -> Result<usize, StoreError> {
        let now = now_millis();
        let limits = self.limits;
        Ok(self
            .remove_where(|f| limits.over(f, now) || !keep(f))?
            .len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// When an exhausted family's last access token expires.
    const K: u64 = u64::MAX;

    fn families(dir: &std::path::Path) -> Families {
        let store = Arc::new(
            Store::open(
                dir,
                crate::config::Durability::Sync,
                Duration::from_millis(100),
            )
            .unwrap(),
        );
        let limits = Limits {
            absolute_ms: 60_000,
            idle_ms: 60_000,
            per_user: 2,
            per_client: 100,
        };
        Families::open(store, [3; 32], limits, |_| true).unwrap()
    }

    #[test]
    fn rotation_counts_down_and_reuse_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let f = families(dir.path());
        let id = "0123456789abcdef0123456789abcdef";
        let family = Families::new_family(id, "c", "u", "api", Some(2), GrantKind::Password);
        let (t0, ended) = f.start(family, || Ok(())).unwrap();
        assert!(ended.is_empty());
        assert!(f.rotate(&t0, "other", K, |_| Ok(())).is_err());
        let Rotation::Next {
            token: Some(t1), ..
        } = f.rotate(&t0, "c", K, |_| Ok(())).unwrap()
        else {
            panic!("rotated")
        };
        // The last refresh: no further token, the family kept for reuse.
        let Rotation::Next {
            token: None,
            family,
        } = f.rotate(&t1, "c", K, |_| Ok(())).unwrap()
        else {
            panic!("exhausted")
        };
        assert_eq!(family.keep_until, Some(K));
        assert!(matches!(
            f.rotate(&t1, "c", K, |_| Ok(())),
            Ok(Rotation::Reused(_))
        ));
        assert!(matches!(
            f.rotate(&t0, "c", K, |_| Ok(())),
            Ok(Rotation::Reused(_))
        ));
        // A forged tag is unknown, not reuse.
        let last = if t0.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{last}", &t0[..t0.len() - 1]);
        assert!(f.rotate(&forged, "c", K, |_| Ok(())).is_err());
        f.remove(id).unwrap();
        assert!(f.rotate(&t1, "c", K, |_| Ok(())).is_err());
    }

    #[test]
    fn caps_end_the_least_recently_used_and_lifetimes_end_families() {
        let dir = tempfile::tempdir().unwrap();
        let f = families(dir.path());
        let ids = ["a", "b", "c"].map(|c| c.repeat(32));
        let mut tokens = Vec::new();
        for id in &ids {
            let family = Families::new_family(id, "c", "u", "api", None, GrantKind::Password);
            let (token, ended) = f.start(family, || Ok(())).unwrap();
            tokens.push((token, ended));
            std::thread::sleep(Duration::from_millis(5));
        }
        // Two per user: the third ended the first.
        assert_eq!(tokens[2].1, vec![ids[0].clone()]);
        assert!(f.rotate(&tokens[0].0, "c", K, |_| Ok(())).is_err());
        assert!(f.rotate(&tokens[1].0, "c", K, |_| Ok(())).is_ok());
        // Past its idle time a family is swept.
        let mut limits = f.limits;
        limits.idle_ms = 0;
        let family = f.live.lock().get(&ids[2]).cloned().unwrap();
        assert!(limits.over(&family, now_millis()));
        assert_eq!(f.sweep(|_| true).unwrap(), 0);
        assert_eq!(f.sweep(|fam| fam.id != ids[2]).unwrap(), 1);
        assert!(f.rotate(&tokens[2].0, "c", K, |_| Ok(())).is_err());
    }
}
