//! How the world holds a host, built for a million of them: its labels are
//! one pointer to a label map shared by every host with the same labels,
//! its reports a small sorted vector whose component names and versions
//! are shared strings, and its id is shared with the engine's rollouts.
//!
//! A [`Strings`] interner owns the sharing: the few hundred distinct label
//! maps, component names and versions of a fleet are allocated once.
//!
//! The hosts are a [`HostMap`]: found by hash, since every check-in looks
//! its host up several times, and listed in id order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet};
use jiff::Timestamp;
use sluice_api::agent::ReportState;
use sluice_core::fleet::{HostId, Labels};

/// Every host by id. A check-in finds its host by hash, in one probe, where
/// an ordered map of a million hosts compares some twenty ids; the ids are
/// also kept sorted, for the listings, pages and feeds that go in id order.
/// Hosts are never removed.
#[derive(Debug, Default)]
pub struct HostMap {
    entries: HashMap<HostId, HostEntry>,
    order: BTreeSet<HostId>,
}

impl HostMap {
    pub fn get(&self, id: &str) -> Option<&HostEntry> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut HostEntry> {
        self.entries.get_mut(id)
    }

    /// The map's own copy of the id, and the host.
    pub fn get_key_value(&self, id: &str) -> Option<(&HostId, &HostEntry)> {
        self.entries.get_key_value(id)
    }

    pub fn contains_key(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// The host `id`, added (empty) if it is new.
    pub fn get_or_add(&mut self, id: &HostId) -> &mut HostEntry {
        if !self.entries.contains_key(id.as_str()) {
            self.order.insert(id.clone());
        }
        self.entries.entry(id.clone()).or_default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every host, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&HostId, &HostEntry)> + '_ {
        self.order
            .iter()
            .filter_map(|id| self.entries.get_key_value(id.as_str()))
    }

    /// Every id, in order.
    pub fn keys(&self) -> impl Iterator<Item = &HostId> + '_ {
        self.order.iter()
    }

    /// Every host, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&HostId, &mut HostEntry)> + '_ {
        self.entries.iter_mut()
    }
}

impl FromIterator<(HostId, HostEntry)> for HostMap {
    fn from_iter<I: IntoIterator<Item = (HostId, HostEntry)>>(hosts: I) -> HostMap {
        let hosts = hosts.into_iter();
        let mut entries = HashMap::with_capacity(hosts.size_hint().0);
        let mut ids = Vec::with_capacity(hosts.size_hint().0);
        for (id, entry) in hosts {
            ids.push(id.clone());
            entries.insert(id, entry);
        }
        // Built in bulk: the store hands the hosts over sorted.
        HostMap {
            entries,
            order: ids.into_iter().collect(),
        }
    }
}

/// One host as the server knows it.
#[derive(Debug, Clone, Default)]
pub struct HostEntry {
    /// Shared with every host that has the same labels.
    pub labels: Labels,
    /// `None` for hosts imported but never checked in.
    pub last_seen: Option<Timestamp>,
    /// The `last_seen` the store holds (see `LAST_SEEN_SAVE_EVERY`).
    pub(super) saved_seen: Option<Timestamp>,
    /// Component → what the host last reported (or was imported with).
    pub components: Reports,
}

/// What a host last reported of one component.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    /// Shared with every host reporting the same version.
    pub version: Arc<str>,
    /// `None` for a version from an import.
    pub state: Option<ReportState>,
    pub message: Option<Box<str>>,
    /// The host's agent found it at `version` after it had run its desired
    /// version, outside an apply.
    pub drifted: bool,
    pub at: Timestamp,
}

impl Reported {
    pub(super) fn same_report(&self, other: &Reported) -> bool {
        self.version == other.version
            && self.state == other.state
            && self.message == other.message
            && self.drifted == other.drifted
    }
}

/// A host's reports by component name: a vector sorted by name (a host
/// reports a handful of components, so a search beats a tree).
#[derive(Debug, Clone, Default)]
pub struct Reports(Vec<(Arc<str>, Reported)>);

impl Reports {
    fn position(&self, component: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (**name).cmp(component))
    }

    pub fn get(&self, component: &str) -> Option<&Reported> {
        let index = self.position(component).ok()?;
        Some(&self.0[index].1)
    }

    pub(super) fn get_mut(&mut self, component: &str) -> Option<&mut Reported> {
        let index = self.position(component).ok()?;
        Some(&mut self.0[index].1)
    }

    pub fn contains_key(&self, component: &str) -> bool {
        self.position(component).is_ok()
    }

    /// Adds or replaces the report of `component`.
    pub(super) fn insert(&mut self, component: Arc<str>, reported: Reported) {
        match self.position(&component) {
            Ok(index) => self.0[index].1 = reported,
            Err(index) => {
                self.0.insert(index, (component, reported));
                self.0.shrink_to_fit();
            }
        }
    }

    /// Component names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.iter().map(|(name, _)| &**name)
    }

    /// Reports by component name, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Reported)> + '_ {
        self.0.iter().map(|(name, reported)| (&**name, reported))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The world's shared strings and label maps.
#[derive(Debug, Default)]
pub struct Strings {
    strings: HashSet<Arc<str>>,
    labels: HashSet<Labels>,
}

impl Strings {
    /// The shared copy of `text`.
    pub fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    /// The shared label map equal to `wire`.
    pub fn labels(&mut self, wire: &BTreeMap<String, String>) -> Labels {
        let labels: Labels = wire
            .iter()
            .map(|(key, value)| (self.get(key), self.get(value)))
            .collect();
        self.share(labels)
    }

    /// The shared label map equal to `labels`.
    pub fn share(&mut self, labels: Labels) -> Labels {
        if let Some(shared) = self.labels.get(&labels) {
            return shared.clone();
        }
        self.labels.insert(labels.clone());
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(version: &str) -> Reported {
        Reported {
            version: Arc::from(version),
            state: Some(ReportState::Ok),
            message: None,
            drifted: false,
            at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn reports_stay_sorted_by_component() {
        let mut reports = Reports::default();
        for name in ["kernel", "docker-engine", "ntp", "docker-engine"] {
            reports.insert(Arc::from(name), reported(name));
        }
        assert_eq!(
            reports.keys().collect::<Vec<_>>(),
            ["docker-engine", "kernel", "ntp"]
        );
        assert_eq!(reports.get("kernel").map(|r| &*r.version), Some("kernel"));
        assert!(reports.get("absent").is_none());
    }

    #[test]
    fn equal_labels_and_strings_are_shared() {
        let mut strings = Strings::default();
        let wire: BTreeMap<String, String> = [("role", "web"), ("site", "sto")]
            .map(|(k, v)| (k.into(), v.into()))
            .into();
        let a = strings.labels(&wire);
        let b = strings.labels(&wire);
        assert!(a.shares(&b), "one label map for both hosts");
        let v1 = strings.get("17.03.1");
        let v2 = strings.get("17.03.1");
        assert!(Arc::ptr_eq(&v1, &v2));
    }
}
