//! `(topic, partition)` map keys found by a borrowed `(&str, i32)`: a
//! `HashMap<(String, i32), V>` can only be asked with an owned key, which
//! costs the request path a `String` per lookup (issue 19). Maps keyed by
//! [`Key`] are asked with `&(topic, partition) as &dyn PartitionKey`, and
//! allocate only when they insert.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// An owned `(topic, partition)` map key.
pub(crate) type Key = (String, i32);

/// A `(topic, partition)`, owned or borrowed.
pub(crate) trait PartitionKey {
    fn parts(&self) -> (&str, i32);
}

impl PartitionKey for Key {
    fn parts(&self) -> (&str, i32) {
        (&self.0, self.1)
    }
}

impl PartitionKey for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn PartitionKey + 'a> for Key {
    fn borrow(&self) -> &(dyn PartitionKey + 'a) {
        self
    }
}

/// Hashes as the owned tuple does (`str` then `i32`), so either finds
/// the other.
impl Hash for dyn PartitionKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn PartitionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionKey + '_ {}

/// The borrowed key to look `topic`/`partition` up with.
#[must_use]
pub(crate) fn key(topic: &str, partition: i32) -> (&str, i32) {
    (topic, partition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn owned_keys_are_found_by_borrowed_ones() {
        let mut map: HashMap<Key, u8> = HashMap::new();
        map.insert(("t".to_owned(), 3), 7);
        let asked = key("t", 3);
        assert_eq!(map.get(&asked as &dyn PartitionKey), Some(&7));
        let other = key("t", 4);
        assert_eq!(map.get(&other as &dyn PartitionKey), None);
    }
}
