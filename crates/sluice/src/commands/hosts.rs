//! `sluice hosts list`, `sluice hosts import`, `sluice hosts pin|unpin` and
//! `sluice hosts reenroll`: the server's inventory, taste-testing a version
//! on one host, and letting a host enroll again.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sluice_api::fleet::PinRequest;
use sluice_api::host::{HostComponent, HostView, ImportHost, ImportResult};
use sluice_api::HostId;
use sluice_client::HostQuery;
use sluice_core::selector::Selector;

use crate::commands::connect::{block_on, ReasonArgs, RemoteArgs};
use crate::commands::output::{self, plural, print_json, print_text, Table};
use crate::commands::plan::load_fleet;
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// The hosts the server knows, their labels and versions
    List(ListArgs),
    /// Register hosts (and the versions they run) from a fleet file, without agents
    Import(ImportArgs),
    /// Tell one host a version of a component for a while, whatever its
    /// rollouts say (a taste-test); it reverts by itself when the pin expires
    Pin(PinArgs),
    /// Lift a host's pin: it returns to its desired version
    Unpin(UnpinArgs),
    /// Let a host enroll again: revoke every token bound to it, effective at once
    Reenroll(ReenrollArgs),
}

#[derive(Debug, Args)]
pub struct PinArgs {
    /// The host's id (FQDN)
    #[arg(value_name = "HOST")]
    host: HostId,
    /// The component to pin
    #[arg(long, short = 'c', value_name = "COMPONENT")]
    component: String,
    /// The version the host is told
    #[arg(long, value_name = "VERSION")]
    version: String,
    /// How long (30m, 2h, 1d); the pin then expires by itself
    #[arg(long = "for", value_name = "DURATION")]
    lasts: String,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct UnpinArgs {
    /// The host's id (FQDN)
    #[arg(value_name = "HOST")]
    host: HostId,
    /// The component whose pin is lifted
    #[arg(long, short = 'c', value_name = "COMPONENT")]
    component: String,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ReenrollArgs {
    /// The host's id (FQDN)
    #[arg(value_name = "HOST")]
    host: HostId,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only hosts matching this label selector, e.g. "role in (edge), site=sto"
    #[arg(long, short = 's', value_name = "SELECTOR")]
    selector: Option<String>,
    /// Show this component's version, state and desired version per host
    #[arg(long, short = 'c', value_name = "COMPONENT")]
    component: Option<String>,
    /// Only hosts found at another version than their desired one, outside
    /// an apply (changed by hand), in --component if given
    #[arg(long)]
    drifted: bool,
    /// Only hosts with a component pinned to a version, with their pins
    #[arg(long)]
    pinned: bool,
    /// At most this many hosts (the server's default: 1000)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Skip this many matching hosts (hosts are ordered by id)
    #[arg(long, value_name = "N")]
    offset: Option<usize>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A fleet file: a JSON array of {"id", "labels", "components"}
    #[arg(value_name = "FLEET.json")]
    file: PathBuf,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(command: HostsCommand) -> Result<(), Failure> {
    match command {
        HostsCommand::List(args) => list(args),
        HostsCommand::Import(args) => import(args),
        HostsCommand::Pin(args) => pin(args),
        HostsCommand::Unpin(args) => unpin(args),
        HostsCommand::Reenroll(args) => reenroll(args),
    }
}

fn pin(args: PinArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "pin a host",
        "sluice hosts pin web-1.example.net --component kernel --version 6.8 --for 2h --reason \"taste-test\"",
    )?;
    let seconds = sluice_api::duration::parse_seconds(&args.lasts)
        .map_err(|error| Failure::invalid(format!("--for: {error}")))?;
    if seconds == 0 {
        return Err(Failure::invalid(
            "--for 0s would end the pin at once; give how long, such as 2h",
        ));
    }
    let host = args.host.to_string();
    let request = PinRequest {
        version: args.version,
        lasts: args.lasts,
        reason,
    };
    let component = args.component;
    args.remote.show(
        "pinning the host",
        async |client| client.pin(&host, &component, &request).await,
        |pin| {
            format!(
                "pinned {} {} to {} until {} ({}); it reverts by itself then, or with `sluice hosts unpin {} --component {}`\n",
                pin.host,
                pin.component,
                pin.version,
                output::timestamp(&pin.expires_at),
                output::relative(&pin.expires_at, jiff::Timestamp::now()),
                pin.host,
                pin.component
            )
        },
    )
}

fn unpin(args: UnpinArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "unpin a host",
        "sluice hosts unpin web-1.example.net --component kernel --reason \"taste-test done\"",
    )?;
    let host = args.host.to_string();
    let component = args.component;
    args.remote.show(
        "unpinning the host",
        async |client| client.unpin(&host, &component, &reason).await,
        |pin| {
            format!(
                "unpinned {} {} (was {}): it returns to its desired version at its next check-in\n",
                pin.host, pin.component, pin.version
            )
        },
    )
}

fn reenroll(args: ReenrollArgs) -> Result<(), Failure> {
    let host = args.host.to_string();
    let reason = args.reason.require(
        "let the host enroll again",
        &format!("sluice hosts reenroll {host} --reason \"disk replaced, token lost\""),
    )?;
    args.remote.show(
        "letting a host enroll again",
        async |client| client.reenroll(&host, &reason).await,
        |done| match done.tokens_revoked {
            0 => format!(
                "host {} had no token; it may enroll with an enrollment token\n",
                done.host
            ),
            count => format!(
                "revoked {} bound to host {}: its agent may enroll again (it needs an enrollment token and no token_file)\n",
                plural(count, "token"),
                done.host
            ),
        },
    )
}

fn list(args: ListArgs) -> Result<(), Failure> {
    if let Some(selector) = &args.selector {
        Selector::parse(selector).map_err(|error| {
            Failure::invalid(format!(
                "--selector {selector:?}: {error}; selectors look like \"role in (edge, api), site=sto, pool!=b\""
            ))
        })?;
    }
    let query = HostQuery {
        selector: args.selector.as_deref(),
        component: args.component.as_deref(),
        drifted: args.drifted,
        pinned: args.pinned,
        offset: args.offset,
        limit: args.limit,
    };
    args.remote.show(
        "listing hosts",
        async |client| client.hosts_page(&query).await,
        |list| {
            if list.hosts.is_empty() {
                if args.pinned {
                    return "no host is pinned (pin one with `sluice hosts pin HOST --component C --version V --for 2h --reason R`)\n".to_owned();
                }
                return match (&args.selector, args.drifted) {
                    (_, true) => "no host has drifted: every agent found its host at the version it last ran as told\n".to_owned(),
                    (Some(selector), false) => format!("no host matches {selector:?}\n"),
                    (None, false) => "no hosts yet: agents register on their first check-in, or import a fleet with `sluice hosts import FLEET.json`\n".to_owned(),
                };
            }
            let mut text = if args.pinned {
                render_pinned(&list.hosts, jiff::Timestamp::now())
            } else {
                render_hosts(
                    &list.hosts,
                    args.component.as_deref(),
                    jiff::Timestamp::now(),
                )
            };
            let shown = list.hosts.len() as u64;
            let offset = args.offset.unwrap_or(0) as u64;
            if shown < list.total {
                text.push_str(&format!(
                    "showing {} to {} of {}; narrow with --selector, or page with --offset {}\n",
                    offset + 1,
                    offset + shown,
                    plural(list.total, "host"),
                    offset + shown
                ));
            } else {
                text.push_str(&format!("{}\n", plural(list.total, "host")));
            }
            text
        },
    )
}

/// Pinned hosts, one row per pin.
fn render_pinned(hosts: &[HostView], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "HOST",
        "COMPONENT",
        "PINNED",
        "RUNS",
        "EXPIRES",
        "BY",
        "REASON",
    ]);
    for host in hosts {
        for pin in &host.pins {
            let runs = host
                .components
                .get(&pin.component)
                .map_or_else(|| "-".to_owned(), |c| c.version.clone());
            table.row(vec![
                host.id.clone(),
                pin.component.clone(),
                pin.version.clone(),
                runs,
                format!(
                    "{} ({})",
                    output::timestamp(&pin.expires_at),
                    output::relative(&pin.expires_at, now)
                ),
                pin.actor.clone(),
                pin.reason.clone(),
            ]);
        }
    }
    table.render()
}

fn render_hosts(hosts: &[HostView], component: Option<&str>, now: jiff::Timestamp) -> String {
    let labels = |host: &HostView| {
        host.labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let seen = |host: &HostView| {
        host.last_seen
            .as_deref()
            .map(|at| output::relative(at, now))
            .unwrap_or_else(|| "never".into())
    };
    let state_name = |state: Option<sluice_api::agent::ReportState>| {
        use sluice_api::agent::ReportState;
        match state {
            Some(ReportState::Ok) => "ok",
            Some(ReportState::Applying) => "applying",
            Some(ReportState::Failed) => "failed",
            None => "-",
        }
    };
    // The state, and whether the host drifted from its desired version.
    let state_text = |c: &HostComponent| match c.drifted {
        true => format!("{}, drifted", state_name(c.state)),
        false => state_name(c.state).to_owned(),
    };
    match component {
        Some(name) => {
            let mut table = Table::new(&[
                "HOST", "LABELS", "VERSION", "STATE", "DESIRED", "ROLLOUT", "SEEN",
            ]);
            for host in hosts {
                let entry = host.components.get(name);
                table.row(vec![
                    host.id.clone(),
                    labels(host),
                    entry
                        .map(|c| c.version.clone())
                        .unwrap_or_else(|| "-".into()),
                    entry.map_or_else(|| "-".into(), state_text),
                    entry
                        .and_then(|c| c.desired.clone())
                        .unwrap_or_else(|| "-".into()),
                    entry
                        .and_then(|c| c.rollout.clone())
                        .unwrap_or_else(|| "-".into()),
                    seen(host),
                ]);
            }
            table.render()
        }
        None => {
            let mut table = Table::new(&["HOST", "LABELS", "COMPONENTS", "SEEN"]);
            for host in hosts {
                let components = host
                    .components
                    .iter()
                    .map(|(name, c)| {
                        let mut text = format!("{name}={}", c.version);
                        if let Some(desired) = c.desired.as_deref().filter(|d| *d != c.version) {
                            text.push_str(&format!("→{desired}"));
                        }
                        let ok = c.state == Some(sluice_api::agent::ReportState::Ok);
                        if c.drifted || (!ok && c.state.is_some()) {
                            let state = match ok {
                                true => "drifted".to_owned(),
                                false => state_text(c),
                            };
                            text.push_str(&format!("({state})"));
                        }
                        text
                    })
                    .collect::<Vec<_>>()
                    .join(" ");
                table.row(vec![host.id.clone(), labels(host), components, seen(host)]);
            }
            table.render()
        }
    }
}

/// Hosts per import request (about 5 MB): a fleet of that size goes in one
/// atomic request; a larger one in several, each well under the server's
/// body limit and each showing progress.
const IMPORT_BATCH: usize = 50_000;

fn import(args: ImportArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "import these hosts",
        "sluice hosts import fleet.json --reason \"CHG-12: the sto racks from the CMDB\"",
    )?;
    let hosts = read_fleet(&args.file)?;
    let (client, connection) = args.remote.connect()?;
    let file = args.file.display().to_string();
    block_on(async move {
        let mut total = ImportResult {
            imported: 0,
            new: 0,
        };
        for batch in hosts.chunks(IMPORT_BATCH) {
            let result = client.import_hosts(batch, &reason).await.map_err(|error| {
                let doing = if total.imported == 0 {
                    format!("importing {file}")
                } else {
                    format!(
                        "importing {file} (the first {} were imported)",
                        plural(total.imported, "host")
                    )
                };
                connection.failure(&doing, error)
            })?;
            total.imported += result.imported;
            total.new += result.new;
        }
        if args.remote.json() {
            return print_json(&total);
        }
        print_text(&format!(
            "imported {} from {file} ({} new, {} updated)\n",
            plural(total.imported, "host"),
            total.new,
            total.imported - total.new.min(total.imported)
        ))
    })
}

/// Reads a fleet file with the parser `plan preview --fleet` and the server
/// use, so that the same files are refused here, there and before anything
/// is sent, and turns it into the wire's hosts.
fn read_fleet(path: &Path) -> Result<Vec<ImportHost>, Failure> {
    let hosts = load_fleet(path)?;
    let pairs = |map: &sluice_core::strmap::StrMap| {
        map.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    };
    Ok(hosts
        .into_iter()
        .map(|host| ImportHost {
            labels: pairs(&host.labels),
            components: pairs(&host.components),
            id: host.id,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_api::agent::ReportState;
    use sluice_api::host::HostComponent;

    use super::*;

    fn host(
        id: &str,
        version: &str,
        state: Option<ReportState>,
        desired: Option<&str>,
    ) -> HostView {
        HostView {
            id: id.into(),
            labels: BTreeMap::from([
                ("role".into(), "edge".into()),
                ("site".into(), "sto".into()),
            ]),
            components: BTreeMap::from([(
                "docker-engine".into(),
                HostComponent {
                    version: version.into(),
                    state,
                    message: None,
                    drifted: false,
                    desired: desired.map(str::to_owned),
                    rollout: desired.map(|_| "r-7".to_owned()),
                    pinned: false,
                },
            )]),
            last_seen: state.map(|_| "2024-06-01T09:59:00Z".to_owned()),
            pins: Vec::new(),
        }
    }

    #[test]
    fn hosts_render_with_and_without_a_component() -> Result<(), jiff::Error> {
        let now: jiff::Timestamp = "2024-06-01T10:00:00Z".parse()?;
        let hosts = [
            host(
                "edge-1.sto",
                "1.12.6",
                Some(ReportState::Applying),
                Some("17.03.1"),
            ),
            host("edge-2.sto", "1.12.6", None, None),
        ];
        expect_test::expect![[r#"
            HOST        LABELS              COMPONENTS                              SEEN
            edge-1.sto  role=edge,site=sto  docker-engine=1.12.6→17.03.1(applying)  1m ago
            edge-2.sto  role=edge,site=sto  docker-engine=1.12.6                    never
        "#]]
        .assert_eq(&render_hosts(&hosts, None, now));
        expect_test::expect![[r#"
            HOST        LABELS              VERSION  STATE     DESIRED  ROLLOUT  SEEN
            edge-1.sto  role=edge,site=sto  1.12.6   applying  17.03.1  r-7      1m ago
            edge-2.sto  role=edge,site=sto  1.12.6   -         -        -        never
        "#]]
        .assert_eq(&render_hosts(&hosts, Some("docker-engine"), now));
        Ok(())
    }

    #[test]
    fn drifted_hosts_say_so_beside_their_state() -> Result<(), jiff::Error> {
        let now: jiff::Timestamp = "2024-06-01T10:00:00Z".parse()?;
        let drifted = |id: &str, state| {
            let mut view = host(id, "1.12.6", Some(state), Some("17.03.1"));
            if let Some(c) = view.components.get_mut("docker-engine") {
                c.drifted = true;
            }
            view
        };
        let hosts = [
            drifted("edge-1.sto", ReportState::Ok),
            drifted("edge-2.sto", ReportState::Failed),
        ];
        expect_test::expect![[r#"
            HOST        LABELS              COMPONENTS                                     SEEN
            edge-1.sto  role=edge,site=sto  docker-engine=1.12.6→17.03.1(drifted)          1m ago
            edge-2.sto  role=edge,site=sto  docker-engine=1.12.6→17.03.1(failed, drifted)  1m ago
        "#]]
        .assert_eq(&render_hosts(&hosts, None, now));
        expect_test::expect![[r#"
            HOST        LABELS              VERSION  STATE            DESIRED  ROLLOUT  SEEN
            edge-1.sto  role=edge,site=sto  1.12.6   ok, drifted      17.03.1  r-7      1m ago
            edge-2.sto  role=edge,site=sto  1.12.6   failed, drifted  17.03.1  r-7      1m ago
        "#]]
        .assert_eq(&render_hosts(&hosts, Some("docker-engine"), now));
        Ok(())
    }

    #[test]
    fn fleet_files_are_checked_before_sending() {
        let dir = tempfile::tempdir().expect("temp dir");
        let check = |name: &str, text: &str| -> String {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("writing");
            match read_fleet(&path) {
                Ok(hosts) => format!("ok {}", hosts.len()),
                Err(Failure::Invalid(error)) => format!("{error:#}"),
                Err(Failure::Failed(error)) => format!("failed: {error}"),
            }
        };
        assert_eq!(
            check(
                "ok.json",
                r#"[{"id": "a", "labels": {"role": "x"}, "components": {"c": "1"}}]"#
            ),
            "ok 1"
        );
        let typo = check("typo.json", "[\n  {\"id\": \"a\", \"lables\": {}}\n]");
        assert!(
            typo.contains("typo.json: line 2, ") && typo.contains("unknown field `lables`"),
            "{typo}"
        );
        let twice = check("twice.json", r#"[{"id": "a"}, {"id": "a"}]"#);
        assert!(twice.contains("\"a\" appears twice"), "{twice}");
        let missing = match read_fleet(&dir.path().join("missing.json")) {
            Err(Failure::Invalid(error)) => format!("{error:#}"),
            other => format!("{other:?}"),
        };
        assert!(missing.contains("no such file or directory"), "{missing}");
    }
}
