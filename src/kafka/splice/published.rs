//! A map the request path reads without a lock: published whole with
//! arc-swap, and copied with a key added the first time that key is used
//! (once per partition or group, rare next to the requests that read it).
//! Values are shared (`Arc`), so a copy carries every value a reader holds
//! or wrote through an older map: nothing written is lost to a copy.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Keys → shared values, each created on first use.
#[derive(Debug)]
pub(crate) struct Published<K, V> {
    map: ArcSwap<HashMap<K, Arc<V>>>,
}

impl<K, V> Default for Published<K, V> {
    fn default() -> Self {
        Published {
            map: ArcSwap::from_pointee(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Default> Published<K, V> {
    /// Runs `f` on `key`'s value if it has one.
    pub(crate) fn with<Q, T>(&self, key: &Q, f: impl FnOnce(&V) -> T) -> Option<T>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.load().get(key).map(|v| f(v))
    }

    /// `key`'s value, created (and a map with it published) on first use;
    /// `owned` makes the key only then.
    pub(crate) fn get_or_create<Q>(&self, key: &Q, owned: impl FnOnce() -> K) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(v) = self.map.load().get(key) {
            return v.clone();
        }
        let owned = owned();
        let mut found = None;
        self.map.rcu(|map| {
            if let Some(v) = map.get(key) {
                found = Some(v.clone());
                return map.clone();
            }
            let fresh = Arc::new(V::default());
            found = Some(fresh.clone());
            let mut next = HashMap::clone(map);
            next.insert(owned.clone(), fresh);
            Arc::new(next)
        });
        found.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn values_survive_the_copies_that_add_keys() {
        let map: Published<String, AtomicU64> = Published::default();
        assert_eq!(map.with("a", |v| v.load(Ordering::SeqCst)), None);
        let a = map.get_or_create("a", || "a".to_owned());
        a.store(7, Ordering::SeqCst);
        for i in 0..100 {
            map.get_or_create(&format!("k{i}") as &str, || format!("k{i}"));
        }
        // A writer holding the value from before the copies still writes
        // into the published one.
        a.fetch_add(1, Ordering::SeqCst);
        assert_eq!(map.with("a", |v| v.load(Ordering::SeqCst)), Some(8));
        assert!(Arc::ptr_eq(&a, &map.get_or_create("a", || unreachable!())));
    }
}
