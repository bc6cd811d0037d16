//! `sluice cluster status`: the replicas sharing the database, which one
//! leads, and the lease's epoch.

use clap::{Args, Subcommand};
use sluice_api::cluster::ClusterView;
use sluice_client::Client;

use crate::commands::connect::RemoteArgs;
use crate::commands::output::{self, Table};
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every replica with its address, role and last heartbeat, and the epoch
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(command: ClusterCommand) -> Result<(), Failure> {
    match command {
        ClusterCommand::Status(args) => {
            args.remote
                .show("reading the cluster", Client::cluster, render)
        }
    }
}

fn render(view: &ClusterView) -> String {
    let mut text = match (&view.leader, view.epoch) {
        (Some(leader), Some(epoch)) => format!("leader {leader}, epoch {epoch}"),
        (Some(leader), None) => format!("leader {leader} (embedded store: no lease)"),
        (None, Some(epoch)) => {
            format!("NO LEADER: the lease of epoch {epoch} ran out and no replica took it yet")
        }
        (None, None) => "NO LEADER: no replica ever took the lease".to_owned(),
    };
    if let Some(expires) = &view.lease_expires_at {
        text.push_str(&format!(
            "; the lease runs to {} unless renewed",
            output::clock(expires)
        ));
    }
    text.push_str(&format!("\nanswered by {}\n\n", view.answered_by));
    let mut table = Table::new(&["REPLICA", "ROLE", "ADDRESS", "LAST HEARTBEAT"]);
    for replica in &view.replicas {
        table.row(vec![
            replica.id.clone(),
            replica.role.to_string(),
            replica.address.clone(),
            format!("{:.1}s ago", replica.heartbeat_age_s),
        ]);
    }
    text.push_str(&table.render());
    text
}

#[cfg(test)]
mod tests {
    use sluice_api::cluster::{ReplicaRole, ReplicaView};

    use super::*;

    #[test]
    fn the_status_names_the_leader_and_every_replica() {
        let view = ClusterView {
            answered_by: "b:7070".to_owned(),
            epoch: Some(3),
            leader: Some("a:7070".to_owned()),
            lease_expires_at: Some("2026-12-07T09:00:08Z".to_owned()),
            replicas: ["a:7070", "b:7070"]
                .into_iter()
                .map(|id| ReplicaView {
                    id: id.to_owned(),
                    address: format!("http://{id}"),
                    role: if id == "a:7070" {
                        ReplicaRole::Leader
                    } else {
                        ReplicaRole::Standby
                    },
                    last_heartbeat: "2026-12-07T09:00:01Z".to_owned(),
                    heartbeat_age_s: 1.25,
                })
                .collect(),
        };
        let text = render(&view);
        assert!(
            text.starts_with("leader a:7070, epoch 3; the lease runs to "),
            "{text}"
        );
        assert!(text.contains("answered by b:7070"), "{text}");
        assert!(
            text.contains("a:7070   leader   http://a:7070  1.2s ago"),
            "{text}"
        );
        assert!(
            text.contains("b:7070   standby  http://b:7070  1.2s ago"),
            "{text}"
        );
        let none = ClusterView {
            leader: None,
            lease_expires_at: None,
            ..view
        };
        assert!(render(&none).starts_with("NO LEADER"), "{}", render(&none));
    }
}
