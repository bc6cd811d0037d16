//! The backend-independent half of [`Store::commit`](crate::Store::commit):
//! a batch sorted by kind, ready for multi-row statements.
//!
//! Each kind of write touches its own table and nothing reads across tables
//! while a batch is applied (foreign keys are checked at commit), so writes
//! of different kinds commute: a batch grouped by kind, each group in batch
//! order, ends in exactly the state of the writes applied one by one. A
//! backend then writes each group with a few multi-row statements in its own
//! dialect, instead of one round trip per write — a `hosts import` that
//! interleaves hosts and their components would otherwise pay that for
//! every row.
//!
//! What stays ordered: writes of one kind (the last write of a row wins;
//! events take their sequence numbers in batch order; rollouts meet the
//! unique-name rule in batch order).

use crate::{
    ComponentRecord, FreezeRecord, HostComponentRecord, HostRecord, NewEvent, RolloutHostRecord,
    RolloutRecord, TokenRecord, Write,
};

/// A batch's writes by kind, each kind in batch order.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Grouped<'a> {
    pub hosts: Vec<&'a HostRecord>,
    pub host_components: Vec<&'a HostComponentRecord>,
    pub components: Vec<&'a ComponentRecord>,
    pub rollouts: Vec<&'a RolloutRecord>,
    pub rollout_hosts: Vec<&'a RolloutHostRecord>,
    pub events: Vec<&'a NewEvent>,
    /// The last freeze write, if any: each replaces the one before. `Some(None)`
    /// turns the freeze off.
    pub freeze: Option<Option<&'a FreezeRecord>>,
    pub tokens: Vec<&'a TokenRecord>,
}

/// Groups `batch` by kind, preserving order within each kind.
pub(crate) fn group(batch: &[Write]) -> Grouped<'_> {
    let mut g = Grouped::default();
    for write in batch {
        match write {
            Write::Host(r) => g.hosts.push(r),
            Write::HostComponent(r) => g.host_components.push(r),
            Write::Component(r) => g.components.push(r),
            Write::Rollout(r) => g.rollouts.push(r),
            Write::RolloutHost(r) => g.rollout_hosts.push(r),
            Write::Event(r) => g.events.push(r),
            Write::Freeze(r) => g.freeze = Some(r.as_ref()),
            Write::Token(r) => g.tokens.push(r),
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(id: &str) -> HostRecord {
        HostRecord {
            id: id.to_owned(),
            labels: Default::default(),
            last_seen: None,
        }
    }

    fn component(name: &str) -> ComponentRecord {
        ComponentRecord {
            name: name.to_owned(),
            stable_version: None,
        }
    }

    fn freeze(reason: &str) -> FreezeRecord {
        FreezeRecord {
            actor: "ops".to_owned(),
            reason: reason.to_owned(),
            since: "2026-01-01T00:00:00Z".to_owned(),
        }
    }

    #[test]
    fn writes_are_grouped_by_kind_in_batch_order() {
        let (a, b, c) = (host("a"), host("b"), host("c"));
        let (web, db) = (component("web"), component("db"));
        let batch = vec![
            Write::Host(c.clone()),
            Write::Component(web.clone()),
            Write::Host(a.clone()),
            Write::Component(db.clone()),
            Write::Host(b.clone()),
        ];
        assert_eq!(
            group(&batch),
            Grouped {
                hosts: vec![&c, &a, &b],
                components: vec![&web, &db],
                ..Grouped::default()
            }
        );
    }

    #[test]
    fn the_last_freeze_write_counts() {
        let on = freeze("incident");
        let batch = vec![Write::Freeze(Some(freeze("first"))), Write::Freeze(None)];
        assert_eq!(group(&batch).freeze, Some(None));
        let batch = vec![
            Write::Freeze(None),
            Write::Component(component("web")),
            Write::Freeze(Some(on.clone())),
        ];
        assert_eq!(group(&batch).freeze, Some(Some(&on)));
        assert_eq!(group(&[Write::Component(component("web"))]).freeze, None);
    }

    #[test]
    fn an_empty_batch_has_no_writes() {
        assert_eq!(group(&[]), Grouped::default());
    }
}
