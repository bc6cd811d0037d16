//! What each dashboard page shows, computed from memory under the read
//! lock ([`crate::state::AppState::read`]) and nothing else: plain data for
//! the templates. Everything a view depends on comes from its URL (path and
//! query), so a pasted link shows the same view.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Deserialize;
use sluice_api::admin::FreezeView;
use sluice_api::agent::ReportState;
use sluice_api::fleet::PinView;
use sluice_api::host::HostView;
use sluice_api::rollout::{
    HostState, Phase, RolloutDetail, RolloutState, RolloutSummary, StratumView,
};
use sluice_core::rollout::{HostState as EngineHostState, Rollout};
use sluice_core::selector::Selector;

use super::DashError;
use crate::vocabulary;
use crate::world::{HostFilter, World};

/// Rows per page of a list.
pub const PAGE: usize = 100;
/// Rollouts per page of the rollouts list.
pub const ROLLOUT_PAGE: usize = 50;
/// The tabs of a rollout page.
pub const TABS: [&str; 6] = ["strata", "hosts", "gates", "events", "report", "plan"];
/// Percent-encodes a query value or path segment.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// `path?k=v&…` with the given (non-empty) parameters, encoded.
pub fn link(path: &str, params: &[(&str, &str)]) -> String {
    let mut url = path.to_owned();
    let mut first = true;
    for (key, value) in params {
        if value.is_empty() {
            continue;
        }
        url.push(if first { '?' } else { '&' });
        first = false;
        url.push_str(key);
        url.push('=');
        url.push_str(&encode(value));
    }
    url
}

/// A stored RFC 3339 time as people read it: `2026-03-01 09:30:00 UTC`.
pub fn short_time(at: &str) -> String {
    match at.get(..19) {
        Some(seconds) if at.ends_with('Z') => format!("{} UTC", seconds.replacen('T', " ", 1)),
        _ => at.to_owned(),
    }
}

/// An empty query value means "no filter".
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Pages of `per` rows for `total` rows (at least one).
fn pages(total: usize, per: usize) -> usize {
    total.div_ceil(per).max(1)
}

/// A page number from the query: 1-based, at least 1.
fn page_of(page: Option<usize>) -> usize {
    page.unwrap_or(1).max(1)
}

/// Links to the previous and next page of a list, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pager {
    pub page: usize,
    pub pages: usize,
    pub total: usize,
    pub previous: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    pub fn new(page: usize, total: usize, per: usize, href: impl Fn(usize) -> String) -> Pager {
        let count = pages(total, per);
        Pager {
            page,
            pages: count,
            total,
            previous: (page > 1).then(|| href(page - 1)),
            next: (page < count).then(|| href(page + 1)),
        }
    }
}

// ---- overview ------------------------------------------------------------

/// One version's share of a component's hosts.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    pub version: String,
    pub hosts: u64,
    pub percent: f64,
    /// The colour slot of the version (0..[`super::chart::PALETTE`]).
    pub slot: usize,
    pub stable: bool,
}

/// One component on the overview.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentRow {
    pub name: String,
    pub stable: Option<String>,
    pub hosts: u64,
    pub shares: Vec<Share>,
    /// The shares as a stacked bar (SVG).
    pub bar: String,
    pub active: Vec<RolloutRow>,
    /// Hosts whose agent reports the component drifted.
    pub drifted: u64,
    /// The host search listing them.
    pub drifted_href: String,
}

/// The fleet overview.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    pub hosts: usize,
    pub components: Vec<ComponentRow>,
    pub freeze: FreezeView,
    pub active: Vec<RolloutRow>,
    pub changing: Changing,
}

/// What is changing now across all rollouts: hosts in flight per
/// component, the change budget and its use, the rollouts waiting for
/// room, and the pins.
#[derive(Debug, Clone, PartialEq)]
pub struct Changing {
    pub in_flight: u64,
    /// `2% of 1000 hosts: at most 20 in flight`, or empty without a budget.
    pub budget: String,
    /// Hosts in flight against the budget's limit, percent (0 without one).
    pub used: f64,
    pub by_component: Vec<(String, u64)>,
    pub waiting: Vec<WaitingRow>,
    /// Pending rollouts, per component in queue order.
    pub queue: Vec<QueueRow>,
    pub pins: Vec<PinRow>,
}

/// A pending rollout in its component's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub component: String,
    pub position: u64,
    pub id: String,
    pub name: String,
    /// What it waits for: `starts at …; after …`, `blocked: …`, or that
    /// only an operator starts it.
    pub waits_for: String,
    pub blocked: bool,
}

/// The pending rollouts of `rollouts`, by component and queue position.
fn queue(rollouts: &[RolloutSummary]) -> Vec<QueueRow> {
    let mut rows: Vec<QueueRow> = rollouts
        .iter()
        .filter_map(|rollout| {
            let position = rollout.queue_position?;
            let waits_for = match (&rollout.blocked, &rollout.queued) {
                (Some(blocked), _) => format!("blocked: {blocked}"),
                (None, Some(queued)) => queued.clone(),
                (None, None) => "started by hand".to_owned(),
            };
            Some(QueueRow {
                component: rollout.component.clone(),
                position,
                id: rollout.id.clone(),
                name: rollout.name.clone(),
                waits_for,
                blocked: rollout.blocked.is_some(),
            })
        })
        .collect();
    rows.sort_by(|a, b| (&a.component, a.position).cmp(&(&b.component, b.position)));
    rows
}

/// A rollout waiting for room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitingRow {
    pub id: String,
    pub name: String,
    pub component: String,
    pub waiting: String,
    pub since: String,
}

fn changing(world: &World, rollouts: &[RolloutSummary]) -> Changing {
    let view = world.budget_view();
    let budget = match (&view.budget, view.limit) {
        (Some(budget), Some(limit)) => {
            let mut text = format!(
                "{} of {} hosts: at most {limit} in flight",
                budget.max_in_flight, view.fleet
            );
            if let Some(per_stratum) = &budget.per_stratum {
                let _ = write!(
                    text,
                    ", {per_stratum} of each {} stratum",
                    budget.spread.join(",")
                );
            }
            text
        }
        _ => String::new(),
    };
    Changing {
        in_flight: view.in_flight,
        used: match view.limit {
            Some(limit) if limit > 0 => (view.in_flight as f64 * 100.0 / limit as f64).min(100.0),
            _ => 0.0,
        },
        budget,
        by_component: view.in_flight_by_component.into_iter().collect(),
        waiting: view
            .waiting
            .into_iter()
            .map(|waiting| WaitingRow {
                since: short_time(&waiting.since),
                id: waiting.id,
                name: waiting.name,
                component: waiting.component,
                waiting: waiting.waiting,
            })
            .collect(),
        queue: queue(rollouts),
        pins: world.pin_list().into_iter().map(PinRow::from).collect(),
    }
}

/// Shares of `versions`, largest first, with colour slots.
pub fn shares(versions: &BTreeMap<String, u64>, stable: Option<&str>) -> Vec<Share> {
    let total: u64 = versions.values().sum();
    let mut shares: Vec<Share> = versions
        .iter()
        .map(|(version, &hosts)| Share {
            version: version.clone(),
            hosts,
            percent: if total == 0 {
                0.0
            } else {
                hosts as f64 * 100.0 / total as f64
            },
            slot: 0,
            stable: Some(version.as_str()) == stable,
        })
        .collect();
    shares.sort_by(|a, b| {
        b.hosts
            .cmp(&a.hosts)
            .then_with(|| a.version.cmp(&b.version))
    });
    for (slot, share) in shares.iter_mut().enumerate() {
        share.slot = slot.min(super::chart::PALETTE.len() - 1);
    }
    shares
}

/// The fleet overview: components, their versions and active rollouts, the freeze.
pub fn overview(world: &World) -> Overview {
    let rollouts = world.rollout_list();
    let components = world
        .component_list()
        .components
        .into_iter()
        .map(|component| {
            let shares = shares(&component.versions, component.stable_version.as_deref());
            (component, shares)
        })
        .map(|(component, shares)| ComponentRow {
            hosts: component.versions.values().sum(),
            bar: super::chart::stacked_bar(
                &shares
                    .iter()
                    .map(|s| {
                        (
                            format!("{}: {} hosts", s.version, s.hosts),
                            s.percent,
                            s.slot,
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            shares,
            active: rollouts
                .iter()
                .filter(|r| component.active_rollouts.contains(&r.id))
                .map(RolloutRow::from)
                .collect(),
            drifted: component.drifted,
            drifted_href: link(
                "/hosts",
                &[("component", &component.name), ("drifted", "true")],
            ),
            name: component.name,
            stable: component.stable_version,
        })
        .collect();
    Overview {
        hosts: world.host_count(),
        components,
        freeze: world.freeze_view(),
        active: rollouts
            .iter()
            .filter(|r| matches!(r.state.as_str(), "pending" | "running" | "paused"))
            .map(RolloutRow::from)
            .collect(),
        changing: changing(world, &rollouts),
    }
}

// ---- rollouts list -------------------------------------------------------

/// The rollouts list's URL state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RolloutsQuery {
    pub state: Option<String>,
    pub component: Option<String>,
    pub page: Option<usize>,
}

/// One rollout in a list.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRow {
    pub id: String,
    pub name: String,
    pub component: String,
    pub version: String,
    pub state: String,
    /// `stage 2/4 · baking`, `frozen`, or empty.
    pub stage: String,
    pub selected: u64,
    pub admitted: u64,
    pub healthy: u64,
    pub failed: u64,
    /// Admitted share of the selected hosts, percent.
    pub progress: f64,
    pub updated_at: String,
}

impl From<&RolloutSummary> for RolloutRow {
    fn from(summary: &RolloutSummary) -> RolloutRow {
        let mut stage = String::new();
        if let Some(index) = summary.stage {
            let _ = write!(stage, "stage {}", index + 1);
            if let Some(phase) = &summary.phase {
                let _ = write!(stage, " · {}", phase.as_str().replace('_', " "));
            }
        }
        if let Some(held) = &summary.held {
            let _ = write!(stage, " · held: {held}");
        }
        if let Some(waiting) = &summary.waiting {
            let _ = write!(stage, " · {waiting}");
        }
        if let Some(position) = summary.queue_position {
            let _ = write!(stage, " · #{position} in queue");
        }
        if let Some(queued) = &summary.queued {
            let _ = write!(stage, " · {queued}");
        }
        if let Some(blocked) = &summary.blocked {
            let _ = write!(stage, " · blocked: {blocked}");
        }
        RolloutRow {
            id: summary.id.clone(),
            name: summary.name.clone(),
            component: summary.component.clone(),
            version: summary.version.clone(),
            state: summary.state.to_string(),
            stage: stage.trim_start_matches(" · ").to_owned(),
            selected: summary.selected,
            admitted: summary.admitted,
            healthy: summary.healthy,
            failed: summary.failed,
            progress: percent(summary.admitted, summary.selected),
            updated_at: short_time(&summary.updated_at),
        }
    }
}

/// `part` of `whole`, in percent (0 of nothing).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A page of the rollouts list with its filters.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutsList {
    pub rows: Vec<RolloutRow>,
    pub state: String,
    pub component: String,
    pub components: Vec<String>,
    pub pager: Pager,
}

/// The rollouts, newest first, filtered by state and component.
pub fn rollouts(world: &World, query: &RolloutsQuery) -> Result<RolloutsList, DashError> {
    let state = given(&query.state).unwrap_or_default().to_owned();
    let wanted = match state.as_str() {
        "" => None,
        word => Some(
            word.parse::<RolloutState>()
                .map_err(|error| DashError::BadRequest(format!("state: {error}")))?,
        ),
    };
    let component = given(&query.component).unwrap_or_default().to_owned();
    let all = world.rollout_list();
    let mut components: Vec<String> = all.iter().map(|r| r.component.clone()).collect();
    components.sort();
    components.dedup();
    let matching: Vec<&RolloutSummary> = all
        .iter()
        .rev()
        .filter(|r| wanted.is_none_or(|wanted| r.state == wanted))
        .filter(|r| component.is_empty() || r.component == component)
        .collect();
    let page = page_of(query.page);
    let rows = matching
        .iter()
        .skip((page - 1) * ROLLOUT_PAGE)
        .take(ROLLOUT_PAGE)
        .map(|r| RolloutRow::from(*r))
        .collect();
    let pager = Pager::new(page, matching.len(), ROLLOUT_PAGE, |page| {
        link(
            "/rollouts",
            &[
                ("state", &state),
                ("component", &component),
                ("page", &page.to_string()),
            ],
        )
    });
    Ok(RolloutsList {
        rows,
        state,
        component,
        components,
        pager,
    })
}

// ---- one rollout -----------------------------------------------------------

/// A rollout page's URL state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RolloutQuery {
    pub tab: Option<String>,
    /// Hosts tab: only this stratum (`role=edge,site=sto`).
    pub stratum: Option<String>,
    /// Hosts tab: only hosts in this state.
    pub hstate: Option<String>,
    pub page: Option<usize>,
}

/// The rollout's URL state, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutUrl {
    pub tab: &'static str,
    pub stratum: String,
    pub hstate: String,
    pub page: usize,
}

impl RolloutUrl {
    pub fn parse(query: &RolloutQuery) -> Result<RolloutUrl, DashError> {
        let tab = match given(&query.tab) {
            None => TABS[0],
            Some(tab) => TABS.iter().copied().find(|t| *t == tab).ok_or_else(|| {
                DashError::BadRequest(format!(
                    "tab: unknown tab {tab:?}; use one of {}",
                    TABS.join(", ")
                ))
            })?,
        };
        let hstate = given(&query.hstate).unwrap_or_default().to_owned();
        if !hstate.is_empty() {
            hstate
                .parse::<HostState>()
                .map_err(|error| DashError::BadRequest(format!("hstate: {error}")))?;
        }
        Ok(RolloutUrl {
            tab,
            stratum: given(&query.stratum).unwrap_or_default().to_owned(),
            hstate,
            page: page_of(query.page),
        })
    }

    /// This rollout's URL with `tab` and the given filters.
    pub fn href(id: &str, tab: &str, stratum: &str, hstate: &str, page: usize) -> String {
        let page = if page > 1 {
            page.to_string()
        } else {
            String::new()
        };
        link(
            &format!("/rollouts/{}", encode(id)),
            &[
                ("tab", tab),
                ("stratum", stratum),
                ("hstate", hstate),
                ("page", &page),
            ],
        )
    }
}

/// One stage with where the rollout is.
#[derive(Debug, Clone, PartialEq)]
pub struct StageRow {
    pub number: usize,
    pub name: String,
    pub percent: f64,
    pub quota: u64,
    pub bake: String,
    pub approve: bool,
    /// `done`, `current` or `next`.
    pub place: &'static str,
}

/// One cell of the strata grid: the stratum as the API shows it, and how
/// it is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub stratum: StratumView,
    /// `failed`, `done` (all healthy), `quota` (admitted up to the quota),
    /// `moving` (admitting), `idle` (nothing admitted).
    pub class: &'static str,
    /// The admitted share in tenths (0–10), for the cell's shade.
    pub fill: u64,
    pub href: String,
}

impl Cell {
    fn new(id: &str, stratum: &StratumView) -> Cell {
        let class = if stratum.failed > 0 {
            "failed"
        } else if stratum.size > 0 && stratum.healthy == stratum.size {
            "done"
        } else if stratum.admitted == 0 {
            "idle"
        } else if stratum.admitted >= stratum.quota && stratum.healthy == stratum.admitted {
            "quota"
        } else {
            "moving"
        };
        Cell {
            class,
            fill: if stratum.size == 0 {
                0
            } else {
                (stratum.admitted * 10).div_ceil(stratum.size)
            },
            href: RolloutUrl::href(id, "hosts", &stratum.key, "", 1),
            stratum: stratum.clone(),
        }
    }
}

/// One host of the rollout, in the hosts tab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutHostRow {
    pub id: String,
    pub state: &'static str,
    pub version: String,
    pub previous: String,
    pub stage: String,
    pub stratum: String,
    /// Why it failed, for failed hosts.
    pub reason: String,
}

/// A page of a rollout's hosts, filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsTab {
    pub rows: Vec<RolloutHostRow>,
    pub pager: Pager,
}

/// The actions the rollout's state allows, in the order shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionButton {
    pub action: &'static str,
    pub label: &'static str,
    /// `primary` (pause), `danger` (abort, rollback) or empty.
    pub kind: &'static str,
}

/// Everything of a rollout page that comes from memory.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutView {
    pub detail: RolloutDetail,
    pub row: RolloutRow,
    pub stages: Vec<StageRow>,
    pub cells: Vec<Cell>,
    pub hosts_tab: Option<HostsTab>,
    pub actions: Vec<ActionButton>,
    /// Hosts of the rollout by reported version, now.
    pub versions: BTreeMap<String, u64>,
    /// The tabs: name, label, link.
    pub tabs: Vec<(&'static str, &'static str, String)>,
    /// The plan's comparison gates, whose canary and baseline the Gates
    /// tab plots.
    pub compare_gates: Vec<String>,
}

/// Hosts of `rollout` by the version they last reported.
pub fn versions_of(rollout: &Rollout) -> BTreeMap<String, u64> {
    let mut versions = BTreeMap::new();
    for host in rollout.hosts() {
        *versions
            .entry(host.version.unwrap_or("unknown").to_owned())
            .or_insert(0) += 1;
    }
    versions
}

fn actions_for(detail: &RolloutDetail) -> Vec<ActionButton> {
    let button = |action, label, kind| ActionButton {
        action,
        label,
        kind,
    };
    let summary = &detail.summary;
    let mut actions = Vec::new();
    match summary.state {
        RolloutState::Pending => actions.push(button("start", "Start", "")),
        RolloutState::Running => {
            actions.push(button("pause", "Pause rollout", "primary"));
            match summary.phase {
                Some(Phase::Baking) => actions.push(button("advance", "Skip bake", "")),
                Some(Phase::AwaitingApproval) => {
                    actions.push(button("approve", "Approve stage", ""))
                }
                _ => {}
            }
        }
        RolloutState::Paused => actions.push(button("resume", "Resume", "")),
        RolloutState::Completed | RolloutState::Aborted | RolloutState::RolledBack => {
            return actions
        }
    }
    if summary.state != RolloutState::Pending {
        actions.push(button("rollback", "Roll back", "danger"));
    }
    actions.push(button("abort", "Abort", "danger"));
    actions
}

fn bake_text(seconds: u64) -> String {
    match seconds {
        0 => String::new(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// The rollout page's memory part, for the URL state `state`.
pub fn rollout(world: &World, id: &str, state: &RolloutUrl) -> Result<RolloutView, DashError> {
    let detail = world.rollout_detail(id)?;
    let entry = world
        .rollout_entry(id)
        .ok_or_else(|| DashError::NotFound(format!("no rollout {id:?}")))?;
    let current = detail.summary.stage;
    let finished = detail.summary.state == RolloutState::Completed;
    let stages = detail
        .stages
        .iter()
        .enumerate()
        .map(|(index, stage)| StageRow {
            number: index + 1,
            name: stage.name.clone(),
            percent: stage.percent,
            quota: stage.quota,
            bake: bake_text(stage.bake_s),
            approve: stage.approve,
            place: match current {
                _ if finished => "done",
                Some(c) if index < c => "done",
                Some(c) if index == c => "current",
                _ => "next",
            },
        })
        .collect();
    let cells = detail.strata.iter().map(|s| Cell::new(id, s)).collect();
    let hosts_tab = (state.tab == "hosts").then(|| hosts_tab(id, &entry.rollout, state));
    let tabs = TABS
        .iter()
        .map(|tab| {
            let (stratum, hstate) = if *tab == "hosts" {
                (state.stratum.as_str(), state.hstate.as_str())
            } else {
                ("", "")
            };
            let label = match *tab {
                "strata" => "Strata",
                "hosts" => "Hosts",
                "gates" => "Gates",
                "events" => "Timeline",
                "report" => "Report",
                _ => "Plan",
            };
            (*tab, label, RolloutUrl::href(id, tab, stratum, hstate, 1))
        })
        .collect();
    Ok(RolloutView {
        row: RolloutRow::from(&detail.summary),
        actions: actions_for(&detail),
        versions: versions_of(&entry.rollout),
        compare_gates: (entry.rollout.plan().gates.compare.iter())
            .map(|gate| gate.common.name.clone())
            .collect(),
        detail,
        stages,
        cells,
        hosts_tab,
        tabs,
    })
}

fn hosts_tab(id: &str, rollout: &Rollout, state: &RolloutUrl) -> HostsTab {
    let spread = &rollout.plan().strategy.spread;
    let mut total = 0;
    let mut rows = Vec::new();
    let skip = (state.page - 1) * PAGE;
    for host in rollout.hosts() {
        let host_state = vocabulary::host_state(host.state).as_str();
        if !state.hstate.is_empty() && host_state != state.hstate {
            continue;
        }
        let stratum = host.stratum.display(spread).to_string();
        if !state.stratum.is_empty() && stratum != state.stratum {
            continue;
        }
        if total >= skip && rows.len() < PAGE {
            rows.push(RolloutHostRow {
                id: host.id.to_owned(),
                state: host_state,
                version: host.version.unwrap_or_default().to_owned(),
                previous: host.previous.unwrap_or_default().to_owned(),
                stage: host
                    .admitted_stage
                    .map(|s| (s + 1).to_string())
                    .unwrap_or_default(),
                stratum,
                reason: match host.state {
                    EngineHostState::Failed { reason } => reason.clone(),
                    _ => String::new(),
                },
            });
        }
        total += 1;
    }
    let pager = Pager::new(state.page, total, PAGE, |page| {
        RolloutUrl::href(id, "hosts", &state.stratum, &state.hstate, page)
    });
    HostsTab { rows, pager }
}

// ---- hosts -----------------------------------------------------------------

/// The host search's URL state.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HostsQuery {
    /// A substring of the host id.
    pub q: Option<String>,
    /// A label selector (`role=edge,site in (sto,lon)`).
    pub selector: Option<String>,
    /// Only hosts that report this component.
    pub component: Option<String>,
    /// `true`: only hosts whose agent reports a component (`component`, if
    /// given) drifted.
    pub drifted: Option<String>,
    pub page: Option<usize>,
}

/// One host found by the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub id: String,
    pub href: String,
    pub labels: String,
    pub versions: String,
    /// The components it drifted in, comma-separated; empty when none.
    pub drifted: String,
    pub last_seen: String,
}

/// A page of the host search with its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSearch {
    pub q: String,
    pub selector: String,
    pub component: String,
    pub drifted: bool,
    pub rows: Vec<HostRow>,
    pub pager: Pager,
}

/// Hosts whose id contains `q`, whose labels match `selector`, that report
/// `component` (drifted, with `drifted`), a page of them.
pub fn hosts(world: &World, query: &HostsQuery) -> Result<HostSearch, DashError> {
    let q = given(&query.q).unwrap_or_default().to_owned();
    let selector_text = given(&query.selector).unwrap_or_default().to_owned();
    let selector = Selector::parse(&selector_text).map_err(|error| {
        DashError::BadRequest(format!(
            "selector: {error}; write labels like role=edge,site in (sto,lon)"
        ))
    })?;
    let component = given(&query.component).unwrap_or_default().to_owned();
    let drifted = match given(&query.drifted) {
        None | Some("false") => false,
        Some("true" | "on") => true,
        Some(other) => {
            return Err(DashError::BadRequest(format!(
                "drifted: {other:?} is not true or false"
            )))
        }
    };
    let filter = HostFilter {
        selector: &selector,
        component: Some(component.as_str()).filter(|c| !c.is_empty()),
        drifted,
        pinned: false,
    };
    let page = page_of(query.page);
    let skip = (page - 1) * PAGE;
    let mut total = 0;
    let mut rows = Vec::new();
    for (id, entry) in world.host_entries() {
        if !q.is_empty() && !id.contains(q.as_str()) {
            continue;
        }
        if !filter.matches(entry) {
            continue;
        }
        if total >= skip && rows.len() < PAGE {
            rows.push(HostRow {
                id: id.to_owned(),
                href: format!("/hosts/{}", encode(id)),
                labels: entry
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                versions: entry
                    .components
                    .iter()
                    .map(|(c, r)| format!("{c} {}", r.version))
                    .collect::<Vec<_>>()
                    .join(", "),
                drifted: entry
                    .components
                    .iter()
                    .filter(|(_, r)| r.drifted)
                    .map(|(c, _)| c)
                    .collect::<Vec<_>>()
                    .join(", "),
                last_seen: entry
                    .last_seen
                    .map(|at| short_time(&crate::clock::rfc3339(at)))
                    .unwrap_or_else(|| "never".to_owned()),
            });
        }
        total += 1;
    }
    let pager = Pager::new(page, total, PAGE, |page| {
        link(
            "/hosts",
            &[
                ("q", &q),
                ("selector", &selector_text),
                ("component", &component),
                ("drifted", if drifted { "true" } else { "" }),
                ("page", &page.to_string()),
            ],
        )
    });
    Ok(HostSearch {
        q,
        selector: selector_text,
        component,
        drifted,
        rows,
        pager,
    })
}

/// A component of a host, with what it runs and what sluice wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostComponentRow {
    pub name: String,
    pub version: String,
    pub state: String,
    /// Its agent found it at `version` after it had run `desired`.
    pub drifted: bool,
    pub desired: String,
    pub message: String,
}

/// A rollout the host takes part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRolloutRow {
    pub id: String,
    pub name: String,
    pub component: String,
    pub version: String,
    pub rollout_state: String,
    pub host_state: &'static str,
    pub stage: String,
}

/// One host: labels, components, and the rollouts it takes part in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPage {
    pub id: String,
    pub labels: Vec<(String, String)>,
    pub last_seen: String,
    pub components: Vec<HostComponentRow>,
    pub rollouts: Vec<HostRolloutRow>,
    pub pins: Vec<PinRow>,
}

/// A host's component pinned to a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    pub host: String,
    pub component: String,
    pub version: String,
    pub expires_at: String,
    pub actor: String,
    pub reason: String,
}

impl From<PinView> for PinRow {
    fn from(pin: PinView) -> PinRow {
        PinRow {
            expires_at: short_time(&pin.expires_at),
            host: pin.host,
            component: pin.component,
            version: pin.version,
            actor: pin.actor,
            reason: pin.reason,
        }
    }
}

/// The host page of `id`.
pub fn host(world: &World, id: &str) -> Result<HostPage, DashError> {
    let HostView {
        id,
        labels,
        components,
        last_seen,
        pins,
    } = world.host(id).ok_or_else(|| {
        DashError::NotFound(format!(
            "no host {id:?}; search for hosts at /hosts by id or selector"
        ))
    })?;
    let rollouts = world
        .rollout_entries()
        .iter()
        .rev()
        .filter_map(|entry| {
            let rollout = &entry.rollout;
            let host = rollout.host(&id)?;
            let plan = rollout.plan();
            Some(HostRolloutRow {
                id: rollout.id().to_owned(),
                name: plan.name.clone(),
                component: plan.component.clone(),
                version: plan.version.clone(),
                rollout_state: vocabulary::rollout_state(rollout.status()).to_string(),
                host_state: vocabulary::host_state(host.state).as_str(),
                stage: host
                    .admitted_stage
                    .map(|s| (s + 1).to_string())
                    .unwrap_or_default(),
            })
        })
        .collect();
    Ok(HostPage {
        labels: labels.into_iter().collect(),
        last_seen: last_seen.map_or_else(|| "never".to_owned(), |at| short_time(&at)),
        components: components
            .into_iter()
            .map(|(name, c)| HostComponentRow {
                name,
                version: c.version,
                state: c.state.map_or("imported", ReportState::as_str).to_owned(),
                drifted: c.drifted,
                desired: c.desired.unwrap_or_default(),
                message: c.message.unwrap_or_default(),
            })
            .collect(),
        rollouts,
        pins: pins.into_iter().map(PinRow::from).collect(),
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_values_and_skip_empty_ones() {
        assert_eq!(
            link(
                "/rollouts/r-1",
                &[
                    ("tab", "hosts"),
                    ("stratum", "role=edge,site=sto"),
                    ("hstate", "")
                ]
            ),
            "/rollouts/r-1?tab=hosts&stratum=role%3Dedge%2Csite%3Dsto"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn rollout_state_rejects_unknown_tabs_and_states_naming_the_field() {
        let state = RolloutUrl::parse(&RolloutQuery::default()).expect("defaults");
        assert_eq!((state.tab, state.page), ("strata", 1));
        let bad = RolloutUrl::parse(&RolloutQuery {
            tab: Some("nope".to_owned()),
            ..RolloutQuery::default()
        });
        assert!(matches!(bad, Err(DashError::BadRequest(m)) if m.starts_with("tab:")));
        let bad = RolloutUrl::parse(&RolloutQuery {
            hstate: Some("sleepy".to_owned()),
            ..RolloutQuery::default()
        });
        assert!(matches!(bad, Err(DashError::BadRequest(m)) if m.starts_with("hstate:")));
    }

    #[test]
    fn cells_are_coloured_by_what_happened_in_the_stratum() {
        let stratum = |admitted, healthy, failed| StratumView {
            key: "role=edge".to_owned(),
            size: 10,
            quota: 5,
            admitted,
            healthy,
            failed,
        };
        let class = |s| Cell::new("r-1", &s).class;
        assert_eq!(class(stratum(0, 0, 0)), "idle");
        assert_eq!(class(stratum(3, 1, 0)), "moving");
        assert_eq!(class(stratum(5, 5, 0)), "quota");
        assert_eq!(class(stratum(10, 10, 0)), "done");
        assert_eq!(class(stratum(5, 3, 1)), "failed");
        let cell = Cell::new("r-1", &stratum(3, 1, 0));
        assert_eq!(cell.fill, 3);
        assert_eq!(cell.href, "/rollouts/r-1?tab=hosts&stratum=role%3Dedge");
    }

    #[test]
    fn shares_are_largest_first_and_mark_the_stable_version() {
        let versions = BTreeMap::from([("1.0".to_owned(), 30), ("2.0".to_owned(), 70)]);
        let shares = shares(&versions, Some("1.0"));
        assert_eq!(shares[0].version, "2.0");
        assert_eq!((shares[0].percent, shares[0].slot), (70.0, 0));
        assert!(shares[1].stable && !shares[0].stable);
    }

    #[test]
    fn times_are_shortened_to_the_second() {
        assert_eq!(
            short_time("2026-03-01T09:30:00.123456Z"),
            "2026-03-01 09:30:00 UTC"
        );
        assert_eq!(short_time("yesterday"), "yesterday");
    }

    #[test]
    fn pagers_link_to_their_neighbours() {
        let pager = Pager::new(2, 250, 100, |page| format!("/hosts?page={page}"));
        assert_eq!(pager.pages, 3);
        assert_eq!(pager.previous.as_deref(), Some("/hosts?page=1"));
        assert_eq!(pager.next.as_deref(), Some("/hosts?page=3"));
        assert_eq!(Pager::new(1, 0, 100, |_| String::new()).pages, 1);
    }
}

// ---- audit ---------------------------------------------------------------

/// Entries the audit page shows at most: the newest matching its filters.
pub const AUDIT_ROWS: u32 = 200;

/// The audit page's filters, from its URL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditFilters {
    /// A token's id or name.
    pub actor: Option<String>,
    pub kind: Option<String>,
    /// RFC 3339.
    pub since: Option<String>,
}

impl AuditFilters {
    /// The API's parameters of these filters: the newest [`AUDIT_ROWS`]
    /// entries matching them.
    pub fn params(&self) -> crate::routes::audit::AuditParams {
        let own = |value: &Option<String>| given(value).map(str::to_owned);
        crate::routes::audit::AuditParams {
            actor: own(&self.actor),
            kind: own(&self.kind),
            since: own(&self.since),
            after: None,
            limit: Some(AUDIT_ROWS),
        }
    }
}

/// One entry of the audit page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    pub kind: String,
    pub target: String,
    /// The rollout or host page of the target, if it has one.
    pub target_href: Option<String>,
    pub actor: String,
    pub role: String,
    pub actor_id: String,
    /// The page of this actor's entries.
    pub actor_href: String,
    pub source: String,
    pub reason: String,
    /// The entry's details, `key: value`.
    pub details: String,
}

/// The audit page: its filters and the entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditView {
    pub actor: String,
    pub since: String,
    /// Every kind, and whether it is the one selected.
    pub kinds: Vec<(&'static str, bool)>,
    pub rows: Vec<AuditRow>,
    /// The page shows the newest [`AUDIT_ROWS`] of more.
    pub capped: bool,
}

/// The audit page of `entries` (oldest first, as the API gives them).
pub fn audit(filters: &AuditFilters, entries: Vec<sluice_api::audit::AuditEntry>) -> AuditView {
    let kind = given(&filters.kind).unwrap_or_default();
    let capped = entries.len() >= AUDIT_ROWS as usize;
    let rows = entries
        .into_iter()
        .rev()
        .map(|entry| {
            let target = entry.target.unwrap_or_default();
            let target_href = if target.is_empty() {
                None
            } else if entry.kind.starts_with("rollout_") {
                Some(format!("/rollouts/{}", encode(&target)))
            } else if entry.kind.starts_with("host_") {
                Some(format!("/hosts/{}", encode(&target)))
            } else {
                None
            };
            let details = match entry.data.as_object() {
                Some(fields) => fields
                    .iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(key, value)| match value {
                        serde_json::Value::String(text) => format!("{key}: {text}"),
                        other => format!("{key}: {other}"),
                    })
                    .collect::<Vec<_>>()
                    .join(" · "),
                None => String::new(),
            };
            AuditRow {
                seq: entry.seq,
                at: short_time(&entry.at),
                kind: entry.kind.replace('_', " "),
                target,
                target_href,
                actor_href: format!("/audit?actor={}", encode(&entry.actor.id)),
                actor: entry.actor.name,
                role: entry.actor.role.as_str().to_owned(),
                actor_id: entry.actor.id,
                source: entry.source.unwrap_or_else(|| "unknown".to_owned()),
                reason: entry.reason.unwrap_or_default(),
                details,
            }
        })
        .collect();
    AuditView {
        actor: given(&filters.actor).unwrap_or_default().to_owned(),
        since: given(&filters.since).unwrap_or_default().to_owned(),
        kinds: sluice_api::vocabulary::AuditKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.as_str() == kind))
            .collect(),
        rows,
        capped,
    }
}
