//! `sluice rollout status --watch`: live progress of one rollout, as
//! indicatif bars per stage and stratum on a terminal, or one line per
//! change in a log file or a pipe, until the rollout ends or Ctrl-C.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use anyhow::anyhow;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use sluice_api::rollout::{EventView, Phase, RolloutDetail, RolloutState};
use sluice_client::Client;

use super::{extremes, stage_label, state_line, EventTail};
use crate::commands::connect::Connection;
use crate::commands::output;
use crate::exit::Failure;

pub(super) async fn watch(
    client: &Client,
    connection: &Connection,
    id: &str,
) -> Result<(), Failure> {
    let detail = client
        .rollout(id)
        .await
        .map_err(|error| connection.failure(&format!("rollout {id}"), error))?;
    let mut tail = EventTail::new(WATCH_EVENTS);
    let _ = tail.poll(client, id).await;
    let mut screen = if std::io::stderr().is_terminal() {
        Screen::bars(&detail)?
    } else {
        Screen::Lines {
            last: String::new(),
        }
    };
    screen.show(&detail, tail.recent(), None);

    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    ticker.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut detail = detail;
    loop {
        if detail.summary.state.is_terminal() {
            screen.finish();
            let summary = &detail.summary;
            return match summary.state {
                RolloutState::Completed => {
                    eprintln!(
                        "rollout {id} completed: its {} hosts run {} {}",
                        summary.selected, summary.component, summary.version
                    );
                    Ok(())
                }
                state => {
                    // Why: the paused reason, else the last reason in the log
                    // (the abort or rollback, by an operator or a gate).
                    let reason = detail.reason.clone().or_else(|| {
                        tail.recent().iter().rev().find_map(|event| {
                            let reason = event.data.get("reason")?.as_str()?;
                            Some(match &event.actor {
                                Some(actor) => format!("{reason} (by {actor})"),
                                None => reason.to_owned(),
                            })
                        })
                    });
                    Err(Failure::Failed(anyhow!(
                        "rollout {id} ended {}{}",
                        output::words(state.as_str()),
                        reason
                            .map(|reason| format!(": {reason}"))
                            .unwrap_or_default()
                    )))
                }
            };
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                // Cleared rather than left: the terminal's `^C` echo has
                // moved the cursor, and a final frame would land a line off.
                screen.clear();
                eprintln!(
                    "stopped watching; rollout {id} goes on ({})",
                    state_line(&detail.summary, Some(detail.stages.len()))
                );
                return Ok(());
            }
            _ = ticker.tick() => {}
        }
        match client.rollout(id).await {
            Ok(fresh) => {
                detail = fresh;
                let _ = tail.poll(client, id).await;
                screen.show(&detail, tail.recent(), None);
            }
            // Keep watching through a server restart or a network blip.
            Err(error) if error.is_unreachable() || error.status().is_some_and(|s| s >= 500) => {
                screen.show(&detail, tail.recent(), Some(&error.to_string()));
            }
            Err(error) => {
                screen.finish();
                return Err(connection.failure(&format!("rollout {id}"), error));
            }
        }
    }
}

const WATCH_EVENTS: usize = 5;

/// The top line of `--watch`: where the rollout stands and what it waits for.
pub(super) fn watch_headline(detail: &RolloutDetail, now: jiff::Timestamp) -> String {
    let summary = &detail.summary;
    let mut line = format!(
        "{} {}: {}",
        summary.id,
        summary.name,
        state_line(summary, Some(detail.stages.len()))
    );
    if !summary.state.is_terminal() {
        match summary.phase {
            Some(Phase::Baking) => {
                if let Some(until) = &detail.bake_until {
                    let _ = write!(line, ", bake ends {}", output::relative(until, now));
                }
            }
            Some(Phase::AwaitingApproval) => {
                let _ = write!(
                    line,
                    ", approve with: sluice rollout approve {} --reason \"…\"",
                    summary.id
                );
            }
            _ => {}
        }
    }
    let _ = write!(
        line,
        " · in flight {}/{} · failures {}/{}",
        detail.in_flight, detail.max_in_flight, detail.stage_failures, detail.allowed_failures
    );
    line
}

/// What `--watch` draws on: indicatif bars on a terminal, else one line per
/// change (a log file or a pipe).
enum Screen {
    Bars(Box<Bars>),
    Lines { last: String },
}

struct Bars {
    multi: MultiProgress,
    header: ProgressBar,
    stages: Vec<ProgressBar>,
    /// Most advanced, most lagging; absent with fewer than two strata.
    strata: Option<(ProgressBar, ProgressBar)>,
    events: Vec<ProgressBar>,
    hint: ProgressBar,
}

impl Screen {
    fn bars(detail: &RolloutDetail) -> Result<Screen, Failure> {
        let style = |template: &str| {
            ProgressStyle::with_template(template)
                .map_err(|error| Failure::Failed(anyhow!("progress bar template: {error}")))
        };
        let header_style = style("{spinner} {wide_msg}")?;
        let bar_style =
            style("  {prefix:<40!} [{bar:30.green/blue}] {pos:>6}/{len:<6} admitted, {msg}")?
                .progress_chars("█▓░");
        let line_style = style("  {wide_msg}")?;

        let multi = MultiProgress::new();
        let header = multi.add(ProgressBar::new_spinner().with_style(header_style));
        let stages = detail
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| {
                multi.add(
                    ProgressBar::new(stage.quota.max(1))
                        .with_style(bar_style.clone())
                        .with_prefix(stage_label(&detail.summary, index, stage)),
                )
            })
            .collect();
        let strata = (detail.strata.len() >= 2).then(|| {
            (
                multi.add(ProgressBar::new(1).with_style(bar_style.clone())),
                multi.add(ProgressBar::new(1).with_style(bar_style.clone())),
            )
        });
        let events = (0..WATCH_EVENTS)
            .map(|_| multi.add(ProgressBar::new(1).with_style(line_style.clone())))
            .collect();
        // A short last line: the full-width lines above would make the
        // terminal's `^C` echo wrap and shift the final frame down a line.
        let hint = multi.add(
            ProgressBar::new(1)
                .with_style(style("  {msg}")?)
                .with_message("(Ctrl-C stops watching; the rollout goes on)"),
        );
        hint.tick();
        Ok(Screen::Bars(Box::new(Bars {
            multi,
            header,
            stages,
            strata,
            events,
            hint,
        })))
    }

    fn show(&mut self, detail: &RolloutDetail, events: &[EventView], problem: Option<&str>) {
        let summary = &detail.summary;
        let mut headline = watch_headline(detail, jiff::Timestamp::now());
        if let Some(problem) = problem {
            let _ = write!(headline, " · {problem}, retrying");
        }
        match self {
            Screen::Lines { last } => {
                let line = format!(
                    "{headline} · admitted {}/{} · healthy {} · failed {}",
                    summary.admitted, summary.selected, summary.healthy, summary.failed
                );
                if line != *last {
                    let now = jiff::Timestamp::now().strftime("%H:%M:%SZ");
                    eprintln!("{now} {line}");
                    *last = line;
                }
            }
            Screen::Bars(bars) => {
                // One spinner step per refresh: it shows the view is live.
                bars.header.set_message(headline);
                bars.header.tick();
                for (index, (bar, stage)) in bars.stages.iter().zip(&detail.stages).enumerate() {
                    // Admission is cumulative: a stage's share of what is
                    // admitted and healthy so far.
                    bar.set_prefix(stage_label(summary, index, stage));
                    bar.set_length(stage.quota.max(1));
                    bar.set_position(summary.admitted.min(stage.quota));
                    bar.set_message(format!("{} healthy", summary.healthy.min(stage.quota)));
                }
                if let (Some((ahead, behind)), Some((best, worst))) =
                    (&bars.strata, extremes(&detail.strata))
                {
                    for (bar, label, stratum) in [
                        (ahead, "most advanced", best),
                        (behind, "most lagging", worst),
                    ] {
                        bar.set_prefix(format!("{label} {}", stratum.key));
                        bar.set_length(stratum.quota.max(1));
                        bar.set_position(stratum.admitted.min(stratum.quota));
                        bar.set_message(format!(
                            "{} healthy, {} failed, of {}",
                            stratum.healthy, stratum.failed, stratum.size
                        ));
                    }
                }
                let shown = events.len().min(bars.events.len());
                for (bar, event) in bars.events.iter().zip(&events[events.len() - shown..]) {
                    bar.set_message(format!(
                        "{} #{} {} {}{}",
                        output::clock(&event.at),
                        event.seq,
                        event.kind,
                        output::fields(&event.data),
                        event
                            .actor
                            .as_deref()
                            .map(|actor| format!(" (by {actor})"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }

    fn clear(&mut self) {
        if let Screen::Bars(bars) = self {
            let _ = bars.multi.clear();
        }
    }

    fn finish(&mut self) {
        if let Screen::Bars(bars) = self {
            let all = std::iter::once(&bars.header)
                .chain(&bars.stages)
                .chain(bars.strata.iter().flat_map(|(a, b)| [a, b]))
                .chain(&bars.events);
            for bar in all {
                bar.abandon();
            }
            bars.hint.abandon_with_message("");
        }
    }
}
