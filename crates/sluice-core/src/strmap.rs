//! [`StrMap`]: the small string map of a host's labels and components, and
//! the interning that lets a million hosts share a few hundred strings.
//!
//! A fleet of a million hosts has a million label maps, but few distinct ones
//! (roles × sites × pools …) made of a few hundred distinct strings. A
//! `StrMap` is one pointer to an immutable, reference-counted slice of
//! entries sorted by key: 16 bytes in a [`Host`](crate::fleet::Host), cloned
//! by bumping a counter. Its keys and values are `Arc<str>`, so equal strings
//! and equal maps can share one allocation. Lookups search the sorted slice;
//! [`StrMap::insert`] copies it, which is fine for maps of a handful of
//! entries that rarely change.
//!
//! # Interning
//!
//! Sharing happens while [`crate::fleet::parse_fleet`] runs: it calls
//! `interning`, which puts an interner in a thread-local slot for the
//! duration of a closure and drops it when the closure returns or unwinds.
//! While the slot is filled, `StrMap`'s `Deserialize` gives every distinct
//! string one `Arc<str>` and every distinct map one slice; when it is empty
//! (one agent's check-in, say) deserializing simply allocates. The two give
//! equal maps; only the sharing differs.
//!
//! Why a thread-local rather than a `DeserializeSeed` carrying the interner
//! down `Vec<Host>` → `Host` → `StrMap`: serde_json deserializes on the
//! calling thread, so the slot is seen by exactly the maps of this parse, and
//! `Host` and the fleet array keep their derived `Deserialize` (with
//! `deny_unknown_fields`, defaults and serde's messages) instead of
//! hand-written twins that must be kept in step. The interner lives exactly
//! as long as the parse: nothing global grows.

use std::cell::RefCell;
use std::fmt;
use std::iter::FusedIterator;
use std::sync::Arc;

use foldhash::HashMap;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde::Deserialize;

/// One entry of a [`StrMap`].
type Entry = (Arc<str>, Arc<str>);

/// A small map from string to string, sorted by key, immutable and shared:
/// clones share the entries, and the maps of hosts read by one
/// [`parse_fleet`](crate::fleet::parse_fleet) share equal strings and equal
/// maps.
///
/// Serialized as a JSON object in key order; deserialized from a JSON object,
/// where a key given twice is an error naming it.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StrMap(
    /// Sorted by key, keys unique; `None` when empty (never an empty slice),
    /// so that the derived comparisons and hash are those of the entries and
    /// an empty map allocates nothing.
    Option<Arc<[Entry]>>,
);

impl StrMap {
    /// The empty map.
    pub const fn new() -> StrMap {
        StrMap(None)
    }

    /// The value of `key`, if the map has it.
    pub fn get(&self, key: &str) -> Option<&str> {
        let entries = self.entries();
        entries
            .binary_search_by(|(k, _)| k.as_ref().cmp(key))
            .ok()
            .map(|index| entries[index].1.as_ref())
    }

    /// Whether the map has `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value` and returns the value it replaces. Copies the
    /// entries (they are shared), so build a map with [`FromIterator`] rather
    /// than by inserting many times.
    pub fn insert(
        &mut self,
        key: impl Into<Arc<str>>,
        value: impl Into<Arc<str>>,
    ) -> Option<Arc<str>> {
        let (key, value) = (key.into(), value.into());
        let mut entries = self.entries().to_vec();
        let previous = match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(index) => Some(std::mem::replace(&mut entries[index].1, value)),
            Err(index) => {
                entries.insert(index, (key, value));
                None
            }
        };
        *self = StrMap::from_sorted(entries);
        previous
    }

    /// How many entries the map has.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries().iter())
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// The values, in the order of their keys.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &str> + ExactSizeIterator + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Whether the two maps are one allocation (or both empty). Maps that
    /// share are equal; equal maps read by one
    /// [`parse_fleet`](crate::fleet::parse_fleet) share.
    pub fn shares(&self, other: &StrMap) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        }
    }

    /// Identifies the entries while other maps share them: the same number
    /// for every map that [`shares`](Self::shares) them, and `None` for a
    /// map that shares with none, so that work done once per distinct map
    /// can be remembered under it, and is not remembered for a lone map.
    pub(crate) fn shared_identity(&self) -> Option<usize> {
        match &self.0 {
            None => Some(0),
            Some(entries) if Arc::strong_count(entries) > 1 => {
                Some(Arc::as_ptr(entries).cast::<u8>().addr())
            }
            Some(_) => None,
        }
    }

    fn entries(&self) -> &[Entry] {
        self.0.as_deref().unwrap_or_default()
    }

    /// The map of entries already sorted by key, keys unique.
    fn from_sorted(entries: Vec<Entry>) -> StrMap {
        debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
        if entries.is_empty() {
            StrMap(None)
        } else {
            StrMap(Some(entries.into()))
        }
    }

    /// The map of `entries` in any order; `Err` names a key given twice.
    fn from_unique(mut entries: Vec<Entry>) -> Result<StrMap, Arc<str>> {
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Arc::clone(&pair[0].0));
        }
        Ok(StrMap::from_sorted(entries))
    }
}

/// Like `BTreeMap`'s: when a key comes more than once, the last value wins.
impl<K: Into<Arc<str>>, V: Into<Arc<str>>> FromIterator<(K, V)> for StrMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> StrMap {
        let mut entries: Vec<Entry> = iter
            .into_iter()
            .map(|(key, value)| (key.into(), value.into()))
            .collect();
        // Stable: equal keys stay in input order, and the last one is kept.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        StrMap::from_sorted(entries)
    }
}

/// `StrMap::from([("role", "web"), ("site", "sto")])`
impl<K: Into<Arc<str>>, V: Into<Arc<str>>, const N: usize> From<[(K, V); N]> for StrMap {
    fn from(entries: [(K, V); N]) -> StrMap {
        entries.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a StrMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The entries of a [`StrMap`] in key order, as `(key, value)`.
#[derive(Debug, Clone)]
pub struct Iter<'a>(std::slice::Iter<'a, Entry>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        self.0
            .next()
            .map(|(key, value)| (key.as_ref(), value.as_ref()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0
            .next_back()
            .map(|(key, value)| (key.as_ref(), value.as_ref()))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl FusedIterator for Iter<'_> {}

/// `{"role": "web", "site": "sto"}`, like a `BTreeMap`.
impl fmt::Debug for StrMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for StrMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StrMap, D::Error> {
        deserializer.deserialize_map(MapVisitor)
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = StrMap;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<StrMap, A::Error> {
        INTERNER.with(|slot| {
            // Only strings are read below, so the slot is never borrowed
            // twice; were it, allocating is still correct.
            if let Ok(mut slot) = slot.try_borrow_mut() {
                if let Some(interner) = slot.as_mut() {
                    return interner.read_map(access);
                }
            }
            read_map(access)
        })
    }
}

/// Reads a map without interning: every string is allocated.
fn read_map<'de, A: MapAccess<'de>>(mut access: A) -> Result<StrMap, A::Error> {
    let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(64));
    while let Some(key) = access.next_key_seed(ArcStr)? {
        let value = access.next_value_seed(ArcStr)?;
        entries.push((key, value));
    }
    StrMap::from_unique(entries).map_err(|key| duplicate_key(&key))
}

fn duplicate_key<E: de::Error>(key: &str) -> E {
    E::custom(format_args!("duplicate key `{key}`"))
}

/// Deserializes a string straight into an `Arc<str>`, borrowed or not,
/// without an intermediate `String`.
struct ArcStr;

impl<'de> DeserializeSeed<'de> for ArcStr {
    type Value = Arc<str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Arc<str>, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for ArcStr {
    type Value = Arc<str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Arc<str>, E> {
        Ok(Arc::from(value))
    }
}

thread_local! {
    /// The interner of the [`interning`] scope running on this thread, if any.
    static INTERNER: RefCell<Option<Interner>> = const { RefCell::new(None) };
}

/// Runs `f` with interning on: every [`StrMap`] deserialized on this thread
/// meanwhile shares equal strings and equal maps with the others. The
/// interner is dropped when `f` returns or unwinds; the maps keep their
/// strings. Nested calls share the outermost scope's interner.
pub(crate) fn interning<R>(f: impl FnOnce() -> R) -> R {
    /// Empties the slot when the scope that filled it ends, even by a panic.
    struct Scope {
        filled: bool,
    }

    impl Drop for Scope {
        fn drop(&mut self) {
            if self.filled {
                // Dropped outside the borrow: the slot is free again first.
                let interner = INTERNER.with(|slot| slot.borrow_mut().take());
                drop(interner);
            }
        }
    }

    let filled = INTERNER.with(|slot| {
        let mut slot = slot.borrow_mut();
        let empty = slot.is_none();
        if empty {
            *slot = Some(Interner::default());
        }
        empty
    });
    let _scope = Scope { filled };
    f()
}

/// Distinct strings and maps seen in one [`interning`] scope.
///
/// A map is first looked up by its text as read: most maps of a fleet repeat
/// one seen before key for key, and then the map costs one hash of its text
/// and no string lookups. A map whose text is new has its strings numbered
/// (in the order first seen) and is looked up by its entries as `(key number,
/// value number)` sorted by key number, so that maps equal but for the order
/// of their keys share too. Only a map not seen before is sorted by key and
/// allocated.
///
/// At most [`MAX_REMEMBERED_MAPS`] maps are remembered: in a fleet where
/// every host has a label of its own (a serial number, say) no two maps are
/// equal, and remembering them all would only cost memory; their strings are
/// still shared.
#[derive(Default)]
struct Interner {
    /// The map being read: its keys and values, one after the other.
    text: String,
    /// Where each string of `text` ends.
    ends: Vec<usize>,
    /// `ends` and `text` as bytes: the key of `by_text`.
    key: Vec<u8>,
    by_text: HashMap<Box<[u8]>, StrMap>,
    strings: Strings,
    /// The numbered entries of the map being read.
    entries: Vec<(usize, usize)>,
    by_entries: HashMap<Box<[(usize, usize)]>, StrMap>,
}

/// How many distinct maps an [`Interner`] remembers, in each of its tables.
const MAX_REMEMBERED_MAPS: usize = 1 << 16;

#[derive(Default)]
struct Strings {
    numbers: HashMap<Arc<str>, usize>,
    /// Indexed by number.
    strings: Vec<Arc<str>>,
}

impl Interner {
    fn read_map<'de, A: MapAccess<'de>>(&mut self, mut access: A) -> Result<StrMap, A::Error> {
        self.text.clear();
        self.ends.clear();
        let mut append = Append {
            text: &mut self.text,
            ends: &mut self.ends,
        };
        while access.next_key_seed(append.by_ref())?.is_some() {
            access.next_value_seed(append.by_ref())?;
        }
        self.key.clear();
        for end in &self.ends {
            self.key.extend_from_slice(&end.to_le_bytes());
        }
        self.key.extend_from_slice(self.text.as_bytes());
        if let Some(map) = self.by_text.get(self.key.as_slice()) {
            return Ok(map.clone());
        }
        let map = self.by_entries().map_err(|key| duplicate_key(&key))?;
        if self.by_text.len() < MAX_REMEMBERED_MAPS {
            self.by_text.insert(self.key.as_slice().into(), map.clone());
        }
        Ok(map)
    }

    /// The map of the strings in `text`, shared with any equal map read
    /// before; `Err` names a key given twice.
    fn by_entries(&mut self) -> Result<StrMap, Arc<str>> {
        let Interner {
            text,
            ends,
            strings,
            entries,
            by_entries,
            ..
        } = self;
        entries.clear();
        let mut start = 0;
        let mut numbers = ends.iter().map(|&end| {
            let number = strings.number(&text[start..end]);
            start = end;
            number
        });
        while let (Some(key), Some(value)) = (numbers.next(), numbers.next()) {
            entries.push((key, value));
        }
        entries.sort_unstable_by_key(|&(key, _)| key);
        if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Arc::clone(&strings.strings[pair[0].0]));
        }
        if let Some(map) = by_entries.get(entries.as_slice()) {
            return Ok(map.clone());
        }
        let mut shared: Vec<Entry> = entries
            .iter()
            .map(|&(key, value)| {
                (
                    Arc::clone(&strings.strings[key]),
                    Arc::clone(&strings.strings[value]),
                )
            })
            .collect();
        shared.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let map = StrMap::from_sorted(shared);
        if by_entries.len() < MAX_REMEMBERED_MAPS {
            by_entries.insert(entries.as_slice().into(), map.clone());
        }
        Ok(map)
    }
}

impl Strings {
    fn number(&mut self, string: &str) -> usize {
        if let Some(&number) = self.numbers.get(string) {
            return number;
        }
        let number = self.strings.len();
        let shared: Arc<str> = Arc::from(string);
        self.numbers.insert(Arc::clone(&shared), number);
        self.strings.push(shared);
        number
    }
}

/// Deserializes a string by appending it to a map's text, borrowed or not.
struct Append<'a> {
    text: &'a mut String,
    ends: &'a mut Vec<usize>,
}

impl Append<'_> {
    fn by_ref(&mut self) -> Append<'_> {
        Append {
            text: self.text,
            ends: self.ends,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Append<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Append<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        self.text.push_str(value);
        self.ends.push(self.text.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(json: &str) -> Result<StrMap, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn looks_up_iterates_in_key_order_and_inserts() {
        let mut labels = StrMap::from([("site", "sto"), ("role", "web")]);
        assert_eq!(labels.get("role"), Some("web"));
        assert_eq!(labels.get("pool"), None);
        assert!(labels.contains_key("site"));
        assert_eq!(labels.len(), 2);
        assert_eq!(
            labels.iter().collect::<Vec<_>>(),
            [("role", "web"), ("site", "sto")]
        );
        let before = labels.clone();
        assert_eq!(labels.insert("role", "db").as_deref(), Some("web"));
        assert_eq!(labels.insert("pool", "a"), None);
        assert_eq!(labels.keys().collect::<Vec<_>>(), ["pool", "role", "site"]);
        assert_eq!(labels.values().collect::<Vec<_>>(), ["a", "db", "sto"]);
        // Clones share the entries, but inserting copies them.
        assert_eq!(before.get("role"), Some("web"));
        assert_eq!(
            format!("{labels:?}"),
            r#"{"pool": "a", "role": "db", "site": "sto"}"#
        );
    }

    #[test]
    fn collecting_keeps_the_last_value_of_a_repeated_key() {
        let labels: StrMap = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(labels.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
        assert_eq!(labels, StrMap::from([("b", "2"), ("a", "3")]));
    }

    #[test]
    fn the_empty_map_is_the_default_and_allocates_nothing() {
        let empty: StrMap = std::iter::empty::<(String, String)>().collect();
        assert_eq!(empty, StrMap::default());
        assert_eq!(empty, StrMap::new());
        assert!(empty.is_empty());
        assert_eq!(empty.len(), 0);
        assert_eq!(map("{}").expect("empty object"), empty);
        assert_eq!(serde_json::to_string(&empty).expect("json"), "{}");
    }

    #[test]
    fn round_trips_through_a_json_object_in_key_order() {
        let labels = map(r#"{"site":"sto","role":"w\u00e9b"}"#).expect("object");
        assert_eq!(labels, StrMap::from([("role", "wéb"), ("site", "sto")]));
        assert_eq!(
            serde_json::to_string(&labels).expect("json"),
            r#"{"role":"wéb","site":"sto"}"#
        );
    }

    #[test]
    fn rejects_duplicate_keys_and_non_strings_with_or_without_interning() {
        for interned in [false, true] {
            let read = |json| {
                if interned {
                    interning(|| map(json))
                } else {
                    map(json)
                }
            };
            let duplicate = read(r#"{"role":"a","site":"b","role":"a"}"#).expect_err("dup");
            assert!(
                duplicate.to_string().starts_with("duplicate key `role`"),
                "{duplicate}"
            );
            let number = read(r#"{"role":1}"#).expect_err("number");
            assert!(
                number
                    .to_string()
                    .starts_with("invalid type: integer `1`, expected a string"),
                "{number}"
            );
            let list = read(r#"["role"]"#).expect_err("list");
            assert!(
                list.to_string()
                    .starts_with("invalid type: sequence, expected a map"),
                "{list}"
            );
        }
    }

    #[test]
    fn interning_shares_equal_strings_and_maps_and_ends_with_its_scope() {
        let maps: Vec<StrMap> = interning(|| {
            serde_json::from_str(
                r#"[{"role":"web","site":"sto"},{"site":"sto","role":"web"},
                    {"role":"db","site":"sto"},{"owner":"web"}]"#,
            )
            .expect("maps")
        });
        let [a, b, c, d] = &maps[..] else {
            panic!("four maps")
        };
        assert_eq!(a, b);
        // Equal maps are one allocation, whatever the order of their keys.
        assert!(Arc::ptr_eq(
            a.0.as_ref().expect("a"),
            b.0.as_ref().expect("b")
        ));
        // Equal strings are one allocation, keys and values alike.
        assert!(Arc::ptr_eq(&a.entries()[1].1, &c.entries()[1].1));
        assert!(Arc::ptr_eq(&a.entries()[0].1, &d.entries()[0].1));
        assert!(INTERNER.with(|slot| slot.borrow().is_none()));

        // Outside a scope, nothing is shared.
        let plain: Vec<StrMap> =
            serde_json::from_str(r#"[{"role":"web"},{"role":"web"}]"#).expect("maps");
        assert_eq!(plain[0], plain[1]);
        assert!(!Arc::ptr_eq(
            plain[0].0.as_ref().expect("0"),
            plain[1].0.as_ref().expect("1")
        ));
    }

    #[test]
    fn the_scope_ends_on_a_panic() {
        let result = std::panic::catch_unwind(|| interning::<()>(|| panic!("inside")));
        assert!(result.is_err());
        assert!(INTERNER.with(|slot| slot.borrow().is_none()));
    }
}
