//! The dashboard's pages: one GET handler and one askama template each.
//! Handlers read a view ([`super::views`]) under the read lock, then what
//! lives in the store (events, samples), and render.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{self, SET_COOKIE};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use sluice_store::StoredEvent;

use super::chart::{self, Point};
use super::session::{self, Flash, User};
use sluice_api::rollout::{HostState, RolloutState};

use super::views::{self, HostPage, HostSearch, Overview, RolloutUrl, RolloutView, RolloutsList};
use super::{assets, DashError, Dashboard};

/// Events read for a rollout's events and gates tabs, at most.
const MAX_EVENTS: u32 = 10_000;

/// What every page's frame shows.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// Which main navigation entry is current.
    pub nav: &'static str,
    pub user: Option<User>,
    pub flash: Option<Flash>,
    pub css: String,
    pub js: String,
}

impl Layout {
    fn new(title: impl Into<String>, nav: &'static str, user: Option<&User>) -> Layout {
        Layout {
            title: title.into(),
            nav,
            flash: user.and_then(|u| u.flash.clone()),
            user: user.cloned(),
            css: assets::CSS.href(),
            js: assets::JS.href(),
        }
    }
}

fn render(template: &impl Template) -> Result<Html<String>, DashError> {
    Ok(Html(template.render()?))
}

// ---- error ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// The page of a failed request.
pub fn error_page(status: StatusCode, message: &str) -> Result<String, askama::Error> {
    ErrorPage {
        layout: Layout::new(status.as_str(), "", None),
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        message,
    }
    .render()
}

// ---- sign-in -------------------------------------------------------------

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    layout: Layout,
    next: String,
    pairing: String,
    error: String,
}

/// The sign-in page's URL state: where to go after.
#[derive(Debug, Deserialize)]
pub struct SigninQuery {
    next: Option<String>,
}

/// The sign-in form; pairs itself with this browser by a cookie.
pub async fn signin(
    State(dash): State<Dashboard>,
    Query(query): Query<SigninQuery>,
) -> Result<Response, DashError> {
    signin_form(
        dash.app.https(),
        &session::safe_next(query.next.as_deref()),
        "",
        StatusCode::OK,
    )
}

/// The sign-in form, with an error if the last attempt failed.
pub fn signin_form(
    https: bool,
    next: &str,
    error: &str,
    status: StatusCode,
) -> Result<Response, DashError> {
    let pairing = session::random_hex(16)?;
    let page = SigninPage {
        layout: Layout::new("Sign in", "", None),
        next: next.to_owned(),
        pairing: pairing.clone(),
        error: error.to_owned(),
    };
    let cookie = session::set_cookie(
        session::SIGNIN_COOKIE,
        &pairing,
        std::time::Duration::from_secs(3600),
        https,
    );
    Ok((status, [(SET_COOKIE, cookie)], render(&page)?).into_response())
}

// ---- overview ------------------------------------------------------------

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    view: Overview,
}

/// `GET /`: each component's versions across the fleet, active rollouts,
/// and the freeze.
pub async fn overview(
    State(dash): State<Dashboard>,
    user: User,
) -> Result<Html<String>, DashError> {
    let view = dash.app.reveal(views::overview).await?;
    render(&OverviewPage {
        layout: Layout::new("Fleet", "overview", Some(&user)),
        view,
    })
}

// ---- rollouts list -------------------------------------------------------

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    layout: Layout,
    view: RolloutsList,
    states: &'static [RolloutState],
}

/// `GET /rollouts?state=&component=&page=`.
pub async fn rollouts(
    State(dash): State<Dashboard>,
    user: User,
    Query(query): Query<views::RolloutsQuery>,
) -> Result<Html<String>, DashError> {
    let view = dash
        .app
        .reveal(|world| views::rollouts(world, &query))
        .await??;
    render(&RolloutsPage {
        layout: Layout::new("Rollouts", "rollouts", Some(&user)),
        view,
        states: RolloutState::ALL,
    })
}

// ---- one rollout ---------------------------------------------------------

/// One line of the timeline.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub kind: String,
    pub reason: String,
    /// The other fields, `key: value`.
    pub details: String,
    /// `bad` for failures, `action` for what an operator did.
    pub class: &'static str,
}

impl EventRow {
    fn new(stored: &StoredEvent) -> EventRow {
        let event = &stored.event;
        let mut reason = String::new();
        let mut details = Vec::new();
        if let Some(data) = event.data.as_object() {
            for (key, value) in data {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if key == "reason" {
                    reason = text;
                } else {
                    details.push(format!("{key}: {text}"));
                }
            }
        }
        let class = match event.kind.as_str() {
            "host_failed"
            | "gate_failed"
            | "max_failed_exceeded"
            | "rollback_started"
            | "aborted" => "bad",
            _ if event.actor.is_some() => "action",
            _ => "",
        };
        EventRow {
            seq: stored.seq,
            at: views::short_time(&crate::clock::rfc3339(event.at)),
            actor: event.actor.clone().unwrap_or_else(|| "sluice".to_owned()),
            kind: event.kind.replace('_', " "),
            reason,
            details: details.join(" · "),
            class,
        }
    }
}

#[derive(Template)]
#[template(path = "rollout.html")]
struct RolloutPage {
    layout: Layout,
    id: String,
    view: RolloutView,
    state: RolloutUrl,
    chart: String,
    /// Stored samples of the chart, and the time of the first.
    samples: usize,
    since: String,
    progress: String,
    /// The events tab: a page of the timeline, newest first.
    events: Vec<EventRow>,
    events_pager: views::Pager,
    /// The gates tab: every gate evaluation and failure, newest first.
    gate_events: Vec<EventRow>,
    /// The gates tab: each comparison gate's canary against its baseline
    /// over time (its name and the chart).
    comparisons: Vec<(String, String)>,
    /// The report tab: the retrospective's HTML body (escaped by its
    /// renderer, its chart an inline SVG).
    report: String,
    host_states: &'static [HostState],
}

impl RolloutPage {
    /// This page's own URL, where an action's form comes back to.
    fn back(&self) -> String {
        RolloutUrl::href(
            &self.id,
            self.state.tab,
            &self.state.stratum,
            &self.state.hstate,
            self.state.page,
        )
    }
}

/// `GET /rollouts/{id}?tab=&stratum=&hstate=&page=`.
pub async fn rollout(
    State(dash): State<Dashboard>,
    user: User,
    Path(id): Path<String>,
    Query(query): Query<views::RolloutQuery>,
) -> Result<Html<String>, DashError> {
    let state = RolloutUrl::parse(&query)?;
    let now = dash.app.now();
    let view = dash
        .app
        .reveal(|world| views::rollout(world, &id, &state))
        .await??;
    let store = dash.app.store();
    let stored = store
        .samples(&id)
        .await
        .map_err(|e| DashError::Unavailable(e.to_string()))?;
    let (samples, since) = (
        stored.len(),
        stored
            .first()
            .map(|s| crate::clock::rfc3339(s.at))
            .unwrap_or_default(),
    );
    let mut points: Vec<Point> = stored
        .into_iter()
        .map(|sample| Point {
            at: sample.at.as_second(),
            versions: sample.versions,
        })
        .collect();
    points.push(Point {
        at: now.as_second(),
        versions: view.versions.clone(),
    });
    let (mut events, mut events_pager, mut gate_events, mut comparisons) =
        (Vec::new(), views::Pager::default(), Vec::new(), Vec::new());
    if matches!(state.tab, "events" | "gates") {
        let stored = dash
            .app
            .events(&id, 0, MAX_EVENTS)
            .await
            .map_err(|e| DashError::Unavailable(e.to_string()))?;
        if state.tab == "events" {
            let skip = (state.page - 1) * views::PAGE;
            events = stored
                .iter()
                .rev()
                .skip(skip)
                .take(views::PAGE)
                .map(EventRow::new)
                .collect();
            events_pager = views::Pager::new(state.page, stored.len(), views::PAGE, |page| {
                RolloutUrl::href(&id, "events", "", "", page)
            });
        } else {
            gate_events = stored
                .iter()
                .rev()
                .filter(|e| matches!(e.event.kind.as_str(), "gate_evaluated" | "gate_failed"))
                .take(views::PAGE)
                .map(EventRow::new)
                .collect();
            comparisons = comparison_charts(&view.compare_gates, &stored);
        }
    }
    let report = if state.tab == "report" {
        let report = crate::retro::report(&dash.app, &id).await?;
        sluice_sim::retro::render::html_body(&report)
    } else {
        String::new()
    };
    let summary = &view.detail.summary;
    let progress = chart::progress_bar(
        views::percent(summary.admitted, summary.selected),
        views::percent(summary.healthy, summary.selected),
        views::percent(summary.failed, summary.selected),
    );
    render(&RolloutPage {
        layout: Layout::new(format!("{} ({id})", summary.name), "rollouts", Some(&user)),
        chart: chart::versions_over_time(&points),
        samples,
        since,
        progress,
        id,
        view,
        state,
        events,
        events_pager,
        gate_events,
        comparisons,
        report,
        host_states: HostState::ALL,
    })
}

/// Each comparison gate's chart of its canary against its baseline, from
/// the figures of its evaluations.
fn comparison_charts(gates: &[String], stored: &[StoredEvent]) -> Vec<(String, String)> {
    gates
        .iter()
        .enumerate()
        .map(|(index, gate)| {
            let points: Vec<chart::Comparison> = stored
                .iter()
                .filter(|e| {
                    e.event.kind == "gate_evaluated" && e.event.data["gate"] == gate.as_str()
                })
                .filter_map(|e| {
                    let figures = &e.event.data["comparison"];
                    Some(chart::Comparison {
                        at: e.event.at.as_second(),
                        canary: figures["canary"].as_f64()?,
                        baseline: figures["baseline"].as_f64()?,
                    })
                })
                .collect();
            let svg = chart::canary_against_baseline(&index.to_string(), gate, &points);
            (gate.clone(), svg)
        })
        .collect()
}

/// `GET /rollouts/{id}/report/{format}`: the retrospective to download,
/// `html` (one self-contained page), `md`, or `svg` (the chart the
/// Markdown links).
pub async fn report_download(
    State(dash): State<Dashboard>,
    _user: User,
    Path((id, format)): Path<(String, String)>,
) -> Result<Response, DashError> {
    use crate::routes::report::{chart_file, rendered, Wanted};
    let wanted = Wanted::parse(&format)?;
    if wanted == Wanted::Report(sluice_sim::retro::render::Format::Json) {
        return Err(DashError::NotFound(format!(
            "no download {format:?}; use html, md or svg (JSON is GET /v1/rollouts/{id}/report?format=json)"
        )));
    }
    let (content_type, body) = rendered(&dash.app, &id, wanted).await?;
    let file = match wanted {
        Wanted::Chart => chart_file(&id),
        other => format!("{id}-report.{}", other.extension()),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        body,
    )
        .into_response())
}

// ---- hosts ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "hosts.html")]
struct HostsPage {
    layout: Layout,
    view: HostSearch,
}

/// `GET /hosts?q=&selector=&page=`.
pub async fn hosts(
    State(dash): State<Dashboard>,
    user: User,
    Query(query): Query<views::HostsQuery>,
) -> Result<Html<String>, DashError> {
    let view = dash
        .app
        .reveal(|world| views::hosts(world, &query))
        .await??;
    render(&HostsPage {
        layout: Layout::new("Hosts", "hosts", Some(&user)),
        view,
    })
}

#[derive(Template)]
#[template(path = "host.html")]
struct HostPageTemplate {
    layout: Layout,
    view: HostPage,
}

/// `GET /hosts/{id}`: labels, versions, desired versions, rollouts.
pub async fn host(
    State(dash): State<Dashboard>,
    user: User,
    Path(id): Path<String>,
) -> Result<Html<String>, DashError> {
    let view = dash.app.reveal(|world| views::host(world, &id)).await??;
    render(&HostPageTemplate {
        layout: Layout::new(view.id.clone(), "hosts", Some(&user)),
        view,
    })
}

// ---- audit ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    view: views::AuditView,
}

/// `GET /audit?actor=&kind=&since=`: the audit log, newest first, filtered
/// as the URL says.
pub async fn audit(
    State(dash): State<Dashboard>,
    user: User,
    Query(filters): Query<views::AuditFilters>,
) -> Result<Html<String>, DashError> {
    user.caller.require(crate::auth::Need::View)?;
    let query = filters.params().query()?;
    let entries = crate::routes::audit::read(&dash.app, &query).await?;
    render(&AuditPage {
        layout: Layout::new("Audit", "audit", Some(&user)),
        view: views::audit(&filters, entries),
    })
}
