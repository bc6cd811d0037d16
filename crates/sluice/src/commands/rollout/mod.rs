//! `sluice rollout …`: create rollouts from plans, act on them (start, pause,
//! resume, advance, approve, abort, rollback), list them, and follow one
//! (`status`, `status --watch`, `events`), and read its retrospective
//! (`report`).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_api::rollout::{
    Action, EventList, EventView, HostState, Phase, RolloutDetail, RolloutState, RolloutSummary,
    StageView, StratumView,
};
use sluice_client::{Client, ClientError};

use crate::commands::connect::{block_on, ReasonArgs, RemoteArgs};
use crate::commands::output::{self, plural, print_json, print_text, Table};
use crate::exit::Failure;

mod report;
mod watch;

pub use report::ReportFormat;

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Submit a plan as a new rollout (pending until started); prints its id
    Create(CreateArgs),
    /// Start a pending rollout
    Start(ActionArgs),
    /// Stop admitting hosts now; hosts already told keep going
    Pause(ActionArgs),
    /// Continue a paused rollout
    Resume(ActionArgs),
    /// Skip the rest of the current stage's bake
    Advance(ActionArgs),
    /// Let a stage that waits for approval proceed
    Approve(ActionArgs),
    /// Stop for good; admitted hosts keep the new version
    Abort(ActionArgs),
    /// Stop and send every admitted host back to the version it ran before
    Rollback(ActionArgs),
    /// Every rollout, with its state and progress
    List(ListArgs),
    /// One rollout: state, stages, hosts, gates, recent events
    Status(StatusArgs),
    /// A rollout's event log
    Events(EventsArgs),
    /// The retrospective: what happened, how fast it was seen and halted,
    /// how many hosts it hurt, and the retro's questions
    Report(report::ReportArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The plan file (YAML or JSON)
    #[arg(short = 'f', long = "file", value_name = "PLAN")]
    file: PathBuf,
    /// Start the rollout right away
    #[arg(long)]
    start: bool,
    /// Why, recorded in the event log with --start
    #[arg(long, value_name = "REASON", requires = "start")]
    reason: Option<String>,
    /// Start the rollout by itself at this time, RFC 3339 with an offset
    /// (2026-12-07T09:00:00+01:00); with the plan's `after:`, once both
    /// hold. It is pending and queued until then; `start` starts it
    /// earlier, `abort` cancels it
    #[arg(long, value_name = "TIME", conflicts_with = "start")]
    start_at: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The rollout id (`sluice rollout list` shows them)
    #[arg(value_name = "ID")]
    id: String,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The rollout id
    #[arg(value_name = "ID")]
    id: String,
    /// Live progress bars, refreshed every second until the rollout ends or
    /// Ctrl-C; exits 0 when it completes, 1 when it is aborted or rolled back
    #[arg(long, short = 'w')]
    watch: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The rollout id
    #[arg(value_name = "ID")]
    id: String,
    /// Only events after this sequence number
    #[arg(long, value_name = "SEQ")]
    after: Option<i64>,
    /// Only the last N events
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub fn run(command: RolloutCommand) -> Result<(), Failure> {
    match command {
        RolloutCommand::Create(args) => create(args),
        RolloutCommand::Start(args) => act(Action::Start, args),
        RolloutCommand::Pause(args) => act(Action::Pause, args),
        RolloutCommand::Resume(args) => act(Action::Resume, args),
        RolloutCommand::Advance(args) => act(Action::Advance, args),
        RolloutCommand::Approve(args) => act(Action::Approve, args),
        RolloutCommand::Abort(args) => act(Action::Abort, args),
        RolloutCommand::Rollback(args) => act(Action::Rollback, args),
        RolloutCommand::List(args) => list(args),
        RolloutCommand::Status(args) => status(args),
        RolloutCommand::Events(args) => events(args),
        RolloutCommand::Report(args) => report::report(args),
    }
}

// ---- create ----------------------------------------------------------------

fn create(args: CreateArgs) -> Result<(), Failure> {
    // Check the plan here first: every problem, located, without a server.
    let plan = crate::commands::plan::load_plan(&args.file)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading plan file {}", args.file.display()))
        .map_err(Failure::Invalid)?;
    let start_at = args.start_at.as_deref().map(parse_start_at).transpose()?;
    let (client, connection) = args.remote.connect()?;
    let doing = format!("creating a rollout from {}", args.file.display());
    block_on(async move {
        let created = client
            .create_rollout_at(&text, start_at.as_deref())
            .await
            .map_err(|error| connection.failure(&doing, error))?;
        let id = created.id;
        let started = if args.start {
            let reason = match args.reason.as_deref().map(str::trim) {
                Some(reason) if !reason.is_empty() => reason.to_owned(),
                _ => "started on creation (sluice rollout create --start)".to_owned(),
            };
            Some(client.action(&id, Action::Start, &reason).await)
        } else {
            None
        };
        // The id goes out whatever happens next, so that a script can act on it.
        if args.remote.json() {
            let id = serde_json::to_string(&id).context("encoding the id")?;
            print_text(&format!("{{\"id\": {id}}}\n"))?;
        } else {
            print_text(&format!("{id}\n"))?;
        }
        let what = format!(
            "rollout {id}: {} ({} → {}, {})",
            plan.name,
            plan.component,
            plan.version,
            plural(plan.stages.len() as u64, "stage")
        );
        let waits = match (&start_at, &plan.after) {
            (Some(at), Some(after)) => Some(format!(
                "at {} once {} completes",
                output::timestamp(at),
                after.name
            )),
            (Some(at), None) => Some(format!("at {}", output::timestamp(at))),
            (None, Some(after)) => Some(format!("once {} completes", after.name)),
            (None, None) => None,
        };
        match started {
            None if waits.is_some() => {
                if let (Some(waits), false) = (waits, args.remote.json()) {
                    eprintln!(
                        "created {what}; it starts by itself {waits} (sluice rollout list shows the queue; start it earlier with sluice rollout start {id}, cancel it with sluice rollout abort {id})"
                    );
                }
                Ok(())
            }
            None => {
                if !args.remote.json() {
                    eprintln!(
                        "created {what}; start it with: sluice rollout start {id} --reason \"…\""
                    );
                }
                Ok(())
            }
            Some(Ok(_)) => {
                if !args.remote.json() {
                    eprintln!("created and started {what}; follow it with: sluice rollout status {id} --watch");
                }
                Ok(())
            }
            Some(Err(error)) => Err(connection.failure(
                &format!("rollout {id} was created but did not start"),
                error,
            )),
        }
    })
}

/// `--start-at`: an RFC 3339 time with an offset, sent as UTC. Whether it
/// is in the future is the server's to say (its clock decides).
fn parse_start_at(text: &str) -> Result<String, Failure> {
    let at: jiff::Timestamp = text.trim().parse().map_err(|error| {
        Failure::invalid(format!(
            "--start-at {text:?} is not an RFC 3339 time with an offset, such as 2026-12-07T09:00:00+01:00 or 2026-12-07T08:00:00Z: {error}"
        ))
    })?;
    Ok(at.to_string())
}

// ---- actions ---------------------------------------------------------------

/// (doing, done, an example reason) for each action.
fn words(action: Action) -> (&'static str, &'static str, &'static str) {
    match action {
        Action::Start => ("starting", "started", "canary plan reviewed in CHG-1234"),
        Action::Pause => ("pausing", "paused", "error rate up in sto"),
        Action::Resume => (
            "resuming",
            "resumed",
            "false alarm: error rate back to normal",
        ),
        Action::Advance => (
            "advancing",
            "advanced",
            "config-only change, the bake is long enough",
        ),
        Action::Approve => ("approving", "approved", "canary hosts look healthy"),
        Action::Abort => ("aborting", "aborted", "superseded by a newer version"),
        Action::Rollback => (
            "rolling back",
            "rolled back",
            "containers orphaned on upgraded hosts",
        ),
    }
}

fn act(action: Action, args: ActionArgs) -> Result<(), Failure> {
    let (doing, done, example) = words(action);
    let id = &args.id;
    let reason = args.reason.require(
        &format!("{} {id}", action.as_str()),
        &format!(
            "sluice rollout {} {id} --reason \"{example}\"",
            action.as_str()
        ),
    )?;
    args.remote.show(
        &format!("{doing} rollout {id}"),
        async |client| client.action(id, action, &reason).await,
        |summary| format!("{done} rollout {id}: now {}\n", state_line(summary, None)),
    )
}

// ---- list ------------------------------------------------------------------

fn list(args: ListArgs) -> Result<(), Failure> {
    args.remote
        .show("listing rollouts", Client::rollouts, |list| {
            if list.rollouts.is_empty() {
                return "no rollouts yet; create one with: sluice rollout create -f PLAN.yaml\n"
                    .to_owned();
            }
            let now = jiff::Timestamp::now();
            render_list(&list.rollouts, now) + &render_queue(&list.rollouts, now)
        })
}

/// The pending rollouts per component, in queue order, with what each
/// waits for; empty when none is pending.
fn render_queue(rollouts: &[RolloutSummary], now: jiff::Timestamp) -> String {
    let mut pending: Vec<&RolloutSummary> = rollouts
        .iter()
        .filter(|rollout| rollout.queue_position.is_some())
        .collect();
    pending.sort_by(|a, b| {
        (a.component.as_str(), a.queue_position).cmp(&(b.component.as_str(), b.queue_position))
    });
    let mut text = String::new();
    let mut component = None;
    for rollout in pending {
        if component != Some(rollout.component.as_str()) {
            component = Some(rollout.component.as_str());
            let _ = writeln!(text, "\nqueue of {}:", rollout.component);
        }
        let _ = writeln!(
            text,
            "  {}. {} {}: {}",
            rollout.queue_position.unwrap_or_default(),
            rollout.id,
            rollout.name,
            waits_for(rollout, now)
        );
    }
    text
}

/// What a pending rollout waits for, in words: `blocked: …`, `starts at
/// 2026-12-07 08:00:00Z (in 3h); after …`, or that it starts only by hand.
fn waits_for(rollout: &RolloutSummary, now: jiff::Timestamp) -> String {
    if let Some(blocked) = &rollout.blocked {
        return format!("blocked: {blocked}; start or abort it by hand");
    }
    match &rollout.queued {
        Some(queued) => queued
            .split("; ")
            .map(|wait| match wait.strip_prefix("starts at ") {
                Some(at) => format!(
                    "starts at {} ({})",
                    output::timestamp(at),
                    output::relative(at, now)
                ),
                None => wait.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("; "),
        None => "not scheduled: starts when started (sluice rollout start)".to_owned(),
    }
}

fn render_list(rollouts: &[RolloutSummary], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "COMPONENT",
        "VERSION",
        "STATE",
        "STAGE",
        "ADMITTED",
        "HEALTHY",
        "FAILED",
        "UPDATED",
    ])
    .right(&[5, 6, 7, 8]);
    for rollout in rollouts {
        table.row(vec![
            rollout.id.clone(),
            rollout.name.clone(),
            rollout.component.clone(),
            rollout.version.clone(),
            short_state(rollout),
            rollout
                .stage
                .map(|stage| (stage + 1).to_string())
                .unwrap_or_else(|| "-".into()),
            format!("{}/{}", rollout.admitted, rollout.selected),
            rollout.healthy.to_string(),
            rollout.failed.to_string(),
            output::relative(&rollout.updated_at, now),
        ]);
    }
    table.render()
}

/// `running/baking`, `running/progressing (frozen)`, `paused`.
fn short_state(rollout: &RolloutSummary) -> String {
    let mut text = rollout.state.to_string();
    if let Some(phase) = &rollout.phase {
        if !rollout.state.is_terminal() {
            let _ = write!(text, "/{phase}");
        }
    }
    if rollout.held.is_some() {
        text.push_str(" (held)");
    } else if rollout.waiting.is_some() {
        text.push_str(" (waiting)");
    } else if rollout.blocked.is_some() {
        text.push_str(" (blocked)");
    } else if rollout.queued.is_some() {
        text.push_str(" (queued)");
    }
    text
}

/// `running, stage 2/4 (baking)`; without the number of stages when it is
/// not known.
fn state_line(rollout: &RolloutSummary, stages: Option<usize>) -> String {
    let mut text = output::words(rollout.state.as_str());
    if let (Some(stage), false) = (rollout.stage, rollout.state.is_terminal()) {
        let _ = write!(text, ", stage {}", stage + 1);
        if let Some(stages) = stages {
            let _ = write!(text, "/{stages}");
        }
        if let Some(phase) = &rollout.phase {
            let _ = write!(text, " ({})", output::words(phase.as_str()));
        }
    }
    if let Some(held) = &rollout.held {
        let _ = write!(text, ", held: {held}");
    }
    if let Some(waiting) = &rollout.waiting {
        let _ = write!(text, ", {waiting}");
    }
    if let Some(queued) = &rollout.queued {
        let _ = write!(text, ", queued: {queued}");
    }
    if let Some(blocked) = &rollout.blocked {
        let _ = write!(text, ", blocked: {blocked}");
    }
    text
}

// ---- status ----------------------------------------------------------------

fn status(args: StatusArgs) -> Result<(), Failure> {
    if args.watch && args.remote.json() {
        return Err(Failure::invalid(
            "--watch draws progress bars for people; for scripts, poll `sluice rollout status ID --output json`",
        ));
    }
    let (client, connection) = args.remote.connect()?;
    let id = args.id;
    block_on(async move {
        if args.watch {
            return watch::watch(&client, &connection, &id).await;
        }
        let detail = client
            .rollout(&id)
            .await
            .map_err(|error| connection.failure(&format!("rollout {id}"), error))?;
        if args.remote.json() {
            return print_json(&detail);
        }
        let mut tail = EventTail::new(RECENT_EVENTS);
        // The summary is worth showing even if the log is not.
        let events_error = tail.poll(&client, &id).await.err();
        let mut text = render_status(&detail, tail.recent(), jiff::Timestamp::now());
        if let Some(error) = events_error {
            let _ = writeln!(text, "\n(events unavailable: {error})");
        }
        print_text(&text)
    })
}

const RECENT_EVENTS: usize = 10;
const EVENT_PAGE: u32 = 1000;

/// Follows a rollout's event log: pages from a cursor, keeps the last few.
#[derive(Debug)]
struct EventTail {
    after: Option<i64>,
    keep: usize,
    recent: VecDeque<EventView>,
}

impl EventTail {
    fn new(keep: usize) -> EventTail {
        EventTail {
            after: None,
            keep,
            recent: VecDeque::new(),
        }
    }

    /// Fetches every event since the last poll; returns how many were new.
    async fn poll(&mut self, client: &Client, id: &str) -> Result<usize, ClientError> {
        let mut new = 0;
        loop {
            let page = client.events(id, self.after, Some(EVENT_PAGE)).await?;
            let Some(last) = page.events.last().map(|event| event.seq) else {
                return Ok(new);
            };
            if self.after.is_some_and(|after| last <= after) {
                // A server that ignores `after`: stop rather than loop.
                return Ok(new);
            }
            for event in page.events {
                if self.after.is_some_and(|after| event.seq <= after) {
                    continue;
                }
                new += 1;
                self.recent.push_back(event);
                if self.recent.len() > self.keep {
                    self.recent.pop_front();
                }
            }
            self.after = Some(last);
        }
    }

    fn recent(&mut self) -> &[EventView] {
        self.recent.make_contiguous()
    }
}

fn render_status(detail: &RolloutDetail, events: &[EventView], now: jiff::Timestamp) -> String {
    let summary = &detail.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "rollout {}: {} ({} → {})",
        summary.id, summary.name, summary.component, summary.version
    );

    // State line: running, stage 2/4 "ten" 10%, baking until … (in 1h12m).
    let mut state = output::words(summary.state.as_str());
    if let (Some(index), false) = (summary.stage, summary.state.is_terminal()) {
        let _ = write!(state, ", stage {}/{}", index + 1, detail.stages.len());
        if let Some(stage) = detail.stages.get(index) {
            let _ = write!(
                state,
                " {} ({})",
                stage.name,
                output::percent(stage.percent)
            );
        }
        if let Some(phase) = &summary.phase {
            let _ = write!(state, ", {}", output::words(phase.as_str()));
            if *phase == Phase::Baking {
                if let Some(until) = &detail.bake_until {
                    let _ = write!(
                        state,
                        " until {} ({})",
                        output::timestamp(until),
                        output::relative(until, now)
                    );
                }
            }
            if *phase == Phase::AwaitingApproval {
                let _ = write!(
                    state,
                    ": sluice rollout approve {} --reason \"…\"",
                    summary.id
                );
            }
        }
    }
    let mut facts: Vec<(&str, String)> = vec![("state", state)];
    if let Some(held) = &summary.held {
        facts.push(("held", held.clone()));
    }
    if let Some(waiting) = &summary.waiting {
        let since = summary
            .waiting_since
            .as_deref()
            .map(|since| format!(" since {}", output::timestamp(since)))
            .unwrap_or_default();
        facts.push(("waiting", format!("{waiting}{since}")));
    }
    if summary.queued.is_some() || summary.blocked.is_some() {
        let place = summary
            .queue_position
            .map(|position| format!(" (#{position} of {})", summary.component))
            .unwrap_or_default();
        facts.push(("queue", format!("{}{place}", waits_for(summary, now))));
    }
    if let Some(after) = &summary.after {
        facts.push(("after", after.clone()));
    }
    if let Some(at) = &summary.start_at {
        facts.push(("start at", output::timestamp(at)));
    }
    if let Some(reason) = &detail.reason {
        facts.push(("reason", reason.clone()));
    }
    facts.push(("hosts", host_counts(detail)));
    facts.push((
        "in flight",
        format!("{} of at most {}", detail.in_flight, detail.max_in_flight),
    ));
    facts.push((
        "failures",
        format!(
            "{} in this stage, {} allowed{}",
            detail.stage_failures,
            detail.allowed_failures,
            if detail.stage_failures > detail.allowed_failures {
                " (gate failed)"
            } else {
                ""
            }
        ),
    ));
    facts.push((
        "created",
        format!(
            "{} ({}), updated {}",
            output::timestamp(&summary.created_at),
            output::relative(&summary.created_at, now),
            output::relative(&summary.updated_at, now)
        ),
    ));
    let label_width = facts
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0);
    for (label, value) in &facts {
        let _ = writeln!(out, "{label:<label_width$}  {value}");
    }

    // Stages.
    let _ = writeln!(out, "\nstages");
    let mut stages =
        Table::new(&["", "#", "NAME", "PERCENT", "HOSTS", "BAKE", "APPROVAL"]).right(&[1, 3, 4]);
    for (index, stage) in detail.stages.iter().enumerate() {
        stages.row(vec![
            stage_marker(summary, index).to_string().trim().to_owned(),
            (index + 1).to_string(),
            stage.name.clone(),
            output::percent(stage.percent),
            stage.quota.to_string(),
            if stage.bake_s == 0 {
                "-".into()
            } else {
                output::duration(stage.bake_s)
            },
            if stage.approve { "yes" } else { "" }.into(),
        ]);
    }
    out.push_str(&stages.render_indented("  "));

    // Strata: the largest, and the most lagging if it is not among them.
    if !detail.strata.is_empty() {
        const SHOWN: usize = 8;
        let _ = writeln!(
            out,
            "\nstrata ({}{})",
            detail.strata.len(),
            if detail.strata.len() > SHOWN {
                format!(", the {SHOWN} largest and the most lagging")
            } else {
                String::new()
            }
        );
        let mut strata = Table::new(&["STRATUM", "SIZE", "QUOTA", "ADMITTED", "HEALTHY", "FAILED"])
            .right(&[1, 2, 3, 4, 5]);
        let mut shown: Vec<&StratumView> = detail.strata.iter().take(SHOWN).collect();
        if let Some((_, lagging)) = extremes(&detail.strata) {
            if !shown.iter().any(|stratum| stratum.key == lagging.key) {
                shown.push(lagging);
            }
        }
        for stratum in shown {
            strata.row(vec![
                stratum.key.clone(),
                stratum.size.to_string(),
                stratum.quota.to_string(),
                stratum.admitted.to_string(),
                stratum.healthy.to_string(),
                stratum.failed.to_string(),
            ]);
        }
        out.push_str(&strata.render_indented("  "));
    }

    // Gates with their latest evidence.
    let _ = writeln!(out, "\ngates");
    if detail.gates.is_empty() {
        let _ = writeln!(out, "  host health only");
    } else {
        let mut gates = Table::new(&["GATE", "RESULT", "FAILING", "WHEN", "EVIDENCE"]);
        for gate in &detail.gates {
            let (outcome, when, evidence) = match &gate.latest {
                Some(latest) => (
                    output::words(latest.outcome.as_str()),
                    output::relative(&latest.at, now),
                    latest.evidence.clone(),
                ),
                None => ("not yet evaluated".into(), String::new(), String::new()),
            };
            gates.row(vec![
                if gate.report_only {
                    format!("{} (report only)", gate.name)
                } else {
                    gate.name.clone()
                },
                outcome,
                format!("{}/{}", gate.streak, gate.consecutive),
                when,
                evidence,
            ]);
        }
        out.push_str(&gates.render_indented("  "));
    }

    // Recent events.
    let _ = writeln!(out, "\nrecent events");
    if events.is_empty() {
        let _ = writeln!(out, "  none yet");
    } else {
        out.push_str(&event_table(events).render_indented("  "));
    }
    out
}

/// `480 selected, 48 admitted: 40 healthy, 3 instructed, 2 failed, …`.
fn host_counts(detail: &RolloutDetail) -> String {
    let summary = &detail.summary;
    let mut parts: Vec<String> = Vec::new();
    for (state, count) in detail.hosts.iter() {
        if count > 0 || matches!(state, HostState::Healthy | HostState::Failed) {
            parts.push(format!("{count} {state}"));
        }
    }
    format!(
        "{} selected, {} admitted: {}",
        summary.selected,
        summary.admitted,
        parts.join(", ")
    )
}

/// The most advanced and the most lagging strata of the current stage:
/// by healthy share of the quota, then admitted share. Ties go to the
/// larger stratum for the most advanced and to the smaller one for the most
/// lagging (strata come largest first), so that two strata are named.
fn extremes(strata: &[StratumView]) -> Option<(&StratumView, &StratumView)> {
    let progress = |s: &StratumView| -> (f64, f64) {
        if s.quota == 0 {
            (1.0, 1.0)
        } else {
            (
                s.healthy as f64 / s.quota as f64,
                s.admitted as f64 / s.quota as f64,
            )
        }
    };
    let first = strata.first()?;
    let (mut best, mut worst) = (first, first);
    for stratum in &strata[1..] {
        if progress(stratum) > progress(best) {
            best = stratum;
        }
        if progress(stratum) <= progress(worst) {
            worst = stratum;
        }
    }
    Some((best, worst))
}

fn event_table(events: &[EventView]) -> Table {
    let mut table = Table::new(&["SEQ", "TIME", "ACTOR", "EVENT", "DETAILS"]).right(&[0]);
    for event in events {
        table.row(vec![
            event.seq.to_string(),
            output::timestamp(&event.at),
            event.actor.clone().unwrap_or_else(|| "-".into()),
            event.kind.clone(),
            output::fields(&event.data),
        ]);
    }
    table
}

/// `✓` for a stage done, `▶` for the current one, else a space.
fn stage_marker(summary: &RolloutSummary, index: usize) -> char {
    match summary.stage {
        _ if summary.state == RolloutState::Completed => '✓',
        Some(current) if index < current => '✓',
        Some(current) if index == current && !summary.state.is_terminal() => '▶',
        _ => ' ',
    }
}

/// `✓ 1 canary 1%` for a stage done, `▶` for the current one.
fn stage_label(summary: &RolloutSummary, index: usize, stage: &StageView) -> String {
    format!(
        "{} {} {} {}",
        stage_marker(summary, index),
        index + 1,
        stage.name,
        output::percent(stage.percent)
    )
}

// ---- events ----------------------------------------------------------------

fn events(args: EventsArgs) -> Result<(), Failure> {
    let id = &args.id;
    args.remote.show(
        &format!("events of rollout {id}"),
        async |client| {
            let mut tail = EventTail::new(args.last.unwrap_or(usize::MAX));
            tail.after = args.after;
            tail.poll(client, id).await?;
            Ok(EventList {
                events: tail.recent().to_vec(),
            })
        },
        |list| {
            if list.events.is_empty() {
                return format!("no events for rollout {id}\n");
            }
            event_table(&list.events).render()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::watch::watch_headline;

    use sluice_api::rollout::{GateOutcome, GateReadingView, GateView, HostCounts};

    use super::*;

    fn summary(state: &str, stage: Option<usize>, phase: Option<&str>) -> RolloutSummary {
        RolloutSummary {
            id: "r-7".into(),
            name: "docker-17.03.1".into(),
            component: "docker-engine".into(),
            version: "17.03.1".into(),
            state: state.parse().expect("a rollout state"),
            stage,
            phase: phase.map(|phase| phase.parse().expect("a phase")),
            held: None,
            waiting: None,
            waiting_since: None,
            start_at: None,
            after: None,
            queued: None,
            blocked: None,
            queue_position: None,
            selected: 480,
            admitted: 48,
            healthy: 40,
            failed: 2,
            created_at: "2024-06-01T08:00:00Z".into(),
            updated_at: "2024-06-01T09:57:00Z".into(),
        }
    }

    fn stage(name: &str, percent: f64, bake_s: u64, approve: bool, quota: u64) -> StageView {
        StageView {
            name: name.into(),
            percent,
            bake_s,
            approve,
            quota,
        }
    }

    fn stratum(key: &str, size: u64, quota: u64, admitted: u64, healthy: u64) -> StratumView {
        StratumView {
            key: key.into(),
            size,
            quota,
            admitted,
            healthy,
            failed: admitted - healthy,
        }
    }

    fn detail() -> RolloutDetail {
        RolloutDetail {
            summary: summary("running", Some(1), Some("baking")),
            reason: None,
            bake_until: Some("2024-06-01T11:12:00Z".into()),
            stages: vec![
                stage("canary", 1.0, 1800, true, 8),
                stage("ten", 10.0, 7200, false, 48),
                stage("half", 50.0, 14_400, false, 240),
                stage("all", 100.0, 0, false, 480),
            ],
            hosts: HostCounts {
                waiting: 432,
                instructed: 6,
                healthy: 40,
                failed: 2,
                ..HostCounts::default()
            },
            in_flight: 6,
            max_in_flight: 24,
            stage_failures: 2,
            allowed_failures: 2,
            strata: vec![
                stratum("role=edge,site=sto", 200, 20, 20, 18),
                stratum("role=db,site=lon", 160, 16, 16, 16),
                stratum("role=api,site=ash", 120, 12, 12, 6),
            ],
            gates: vec![
                GateView {
                    name: "container-restarts".into(),
                    report_only: false,
                    streak: 0,
                    consecutive: 3,
                    latest: Some(GateReadingView {
                        at: "2024-06-01T09:59:30Z".into(),
                        outcome: GateOutcome::Pass,
                        evidence: "sum(rate(container_restarts_total[5m])) = 0.1, fail if > 0.5"
                            .into(),
                        comparison: None,
                    }),
                },
                GateView {
                    name: "slo-check".into(),
                    report_only: true,
                    streak: 1,
                    consecutive: 1,
                    latest: None,
                },
            ],
            plan: String::new(),
        }
    }

    fn event(seq: i64, kind: &str, actor: Option<&str>, data: serde_json::Value) -> EventView {
        EventView {
            seq,
            rollout: Some("r-1".into()),
            at: "2024-06-01T09:00:00Z".into(),
            actor: actor.map(str::to_owned),
            kind: kind.into(),
            data,
        }
    }

    fn now() -> jiff::Timestamp {
        "2024-06-01T10:00:00Z".parse().unwrap_or_default()
    }

    #[test]
    fn status_reads_top_down_for_the_on_call() {
        let events = [
            event(
                1,
                "started",
                Some("admin"),
                serde_json::json!({"reason": "CHG-1234"}),
            ),
            event(2, "stage_started", None, serde_json::json!({"stage": 1})),
            event(
                3,
                "host_failed",
                None,
                serde_json::json!({"host": "api-3.ash", "message": "exit 1"}),
            ),
        ];
        expect_test::expect![[r#"
            rollout r-7: docker-17.03.1 (docker-engine → 17.03.1)
            state      running, stage 2/4 ten (10%), baking until 2024-06-01 11:12:00Z (in 1h12m)
            hosts      480 selected, 48 admitted: 432 waiting, 6 instructed, 40 healthy, 2 failed
            in flight  6 of at most 24
            failures   2 in this stage, 2 allowed
            created    2024-06-01 08:00:00Z (2h ago), updated 3m ago

            stages
                 #  NAME    PERCENT  HOSTS  BAKE  APPROVAL
              ✓  1  canary       1%      8  30m   yes
              ▶  2  ten         10%     48  2h
                 3  half        50%    240  4h
                 4  all        100%    480  -

            strata (3)
              STRATUM             SIZE  QUOTA  ADMITTED  HEALTHY  FAILED
              role=edge,site=sto   200     20        20       18       2
              role=db,site=lon     160     16        16       16       0
              role=api,site=ash    120     12        12        6       6

            gates
              GATE                     RESULT             FAILING  WHEN     EVIDENCE
              container-restarts       pass               0/3      30s ago  sum(rate(container_restarts_total[5m])) = 0.1, fail if > 0.5
              slo-check (report only)  not yet evaluated  1/1

            recent events
              SEQ  TIME                  ACTOR  EVENT          DETAILS
                1  2024-06-01 09:00:00Z  admin  started        reason=CHG-1234
                2  2024-06-01 09:00:00Z  -      stage_started  stage=1
                3  2024-06-01 09:00:00Z  -      host_failed    host=api-3.ash message="exit 1"
        "#]]
        .assert_eq(&render_status(&detail(), &events, now()));
    }

    #[test]
    fn a_paused_and_held_rollout_says_why() {
        let mut detail = detail();
        detail.summary.state = RolloutState::Paused;
        detail.summary.held = Some("frozen: incident INC-42".into());
        detail.reason = Some("error rate up in sto".into());
        let text = render_status(&detail, &[], now());
        assert!(
            text.contains("\nheld       frozen: incident INC-42\n"),
            "{text}"
        );
        assert!(
            text.contains("\nreason     error rate up in sto\n"),
            "{text}"
        );
        assert!(text.contains("recent events\n  none yet"), "{text}");
    }

    #[test]
    fn a_completed_rollout_ticks_every_stage() {
        let mut detail = detail();
        detail.summary = summary("completed", Some(3), None);
        let text = render_status(&detail, &[], now());
        assert!(text.contains("state      completed\n"), "{text}");
        assert_eq!(text.matches('✓').count(), 4, "{text}");
        assert!(!text.contains('▶'), "{text}");
    }

    #[test]
    fn list_is_a_table_with_relative_times() {
        let mut paused = summary("paused", Some(0), Some("progressing"));
        paused.id = "r-12".into();
        paused.held = Some("frozen".into());
        let done = summary("completed", None, None);
        expect_test::expect![[r#"
            ID    NAME            COMPONENT      VERSION  STATE                      STAGE  ADMITTED  HEALTHY  FAILED  UPDATED
            r-12  docker-17.03.1  docker-engine  17.03.1  paused/progressing (held)      1    48/480       40       2  3m ago
            r-7   docker-17.03.1  docker-engine  17.03.1  completed                      -    48/480       40       2  3m ago
        "#]]
        .assert_eq(&render_list(&[paused, done], now()));
    }

    #[test]
    fn the_queue_lists_pending_rollouts_per_component_in_order() {
        let mut scheduled = summary("pending", None, None);
        scheduled.id = "r-8".into();
        scheduled.name = "docker-17.03.2".into();
        scheduled.queue_position = Some(1);
        scheduled.start_at = Some("2024-06-01T12:00:00Z".into());
        scheduled.queued = Some("starts at 2024-06-01T12:00:00Z".into());
        let mut follower = summary("pending", None, None);
        follower.id = "r-9".into();
        follower.name = "docker-17.03.3".into();
        follower.queue_position = Some(2);
        follower.after = Some("docker-17.03.2".into());
        follower.queued = Some("after docker-17.03.2 (r-8, pending)".into());
        let mut blocked = summary("pending", None, None);
        blocked.id = "r-10".into();
        blocked.name = "kernel-6.1".into();
        blocked.component = "kernel".into();
        blocked.queue_position = Some(1);
        blocked.blocked = Some("after docker-17.03.1 (r-7), which was rolled back".into());
        let done = summary("completed", None, None);
        let all = [done, follower, blocked, scheduled];
        expect_test::expect![[r#"

            queue of docker-engine:
              1. r-8 docker-17.03.2: starts at 2024-06-01 12:00:00Z (in 2h)
              2. r-9 docker-17.03.3: after docker-17.03.2 (r-8, pending)

            queue of kernel:
              1. r-10 kernel-6.1: blocked: after docker-17.03.1 (r-7), which was rolled back; start or abort it by hand
        "#]]
        .assert_eq(&render_queue(&all, now()));
        assert_eq!(short_state(&all[1]), "pending (queued)");
        assert_eq!(short_state(&all[2]), "pending (blocked)");
        assert_eq!(render_queue(&all[..1], now()), "");
    }

    #[test]
    fn start_at_is_read_with_its_offset_and_sent_in_utc() {
        assert_eq!(
            parse_start_at("2026-12-07T09:00:00+01:00").ok().as_deref(),
            Some("2026-12-07T08:00:00Z")
        );
        assert!(parse_start_at("2026-12-07 09:00").is_err());
        assert!(parse_start_at("tomorrow").is_err());
    }

    #[test]
    fn the_most_advanced_and_most_lagging_strata() {
        let detail = detail();
        let (best, worst) = extremes(&detail.strata).expect("strata");
        assert_eq!(best.key, "role=db,site=lon");
        assert_eq!(worst.key, "role=api,site=ash");
        assert!(extremes(&[]).is_none());
        // All level: still two strata, the largest ahead, the smallest behind.
        let level = [
            stratum("a", 30, 3, 3, 3),
            stratum("b", 20, 2, 2, 2),
            stratum("c", 10, 1, 1, 1),
        ];
        let (best, worst) = extremes(&level).expect("strata");
        assert_eq!((best.key.as_str(), worst.key.as_str()), ("a", "c"));
    }

    #[test]
    fn the_watch_headline_says_what_the_rollout_waits_for() {
        let baking = detail();
        assert_eq!(
            watch_headline(&baking, now()),
            "r-7 docker-17.03.1: running, stage 2/4 (baking), bake ends in 1h12m · in flight 6/24 · failures 2/2"
        );
        let mut waiting = detail();
        waiting.summary.phase = Some(Phase::AwaitingApproval);
        assert!(watch_headline(&waiting, now())
            .contains("(awaiting approval), approve with: sluice rollout approve r-7 --reason"));
        let labels: Vec<String> = baking
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| stage_label(&baking.summary, index, stage))
            .collect();
        assert_eq!(
            labels,
            [
                "✓ 1 canary 1%",
                "▶ 2 ten 10%",
                "  3 half 50%",
                "  4 all 100%"
            ]
        );
    }

    #[test]
    fn state_lines_name_the_stage_and_phase() {
        assert_eq!(
            state_line(
                &summary("running", Some(0), Some("awaiting_approval")),
                Some(4)
            ),
            "running, stage 1/4 (awaiting approval)"
        );
        assert_eq!(
            state_line(&summary("rolled_back", Some(2), None), Some(4)),
            "rolled back"
        );
        assert_eq!(
            state_line(&summary("paused", Some(1), Some("baking")), None),
            "paused, stage 2 (baking)"
        );
    }
}
