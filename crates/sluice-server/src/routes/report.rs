//! `GET /v1/rollouts/{id}/report`: the rollout retrospective, as Markdown,
//! one self-contained HTML page, JSON, or its chart alone (SVG).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sluice_api::error::ErrorBody;
use sluice_sim::retro::render::{self, Format};

use crate::auth::{Caller, Need};
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `md` (default), `html`, `json`, or `svg` (the chart of hosts by
    /// state over time, which the Markdown links as `{id}-chart.svg`).
    #[param(pattern = "^(md|html|json|svg)$")]
    format: Option<String>,
}

/// What a report is asked for in: a format, or the chart alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Report(Format),
    Chart,
}

impl Wanted {
    /// `md`, `html`, `json` or `svg`.
    pub fn parse(text: &str) -> Result<Wanted, ApiError> {
        match text {
            "svg" => Ok(Wanted::Chart),
            other => Format::parse(other).map(Wanted::Report).ok_or_else(|| {
                ApiError::bad_field(
                    "format",
                    format!("format {other:?} is not one of md, html, json, svg"),
                )
            }),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Wanted::Report(format) => format.extension(),
            Wanted::Chart => "svg",
        }
    }
}

/// The name the Markdown report links its chart by.
pub fn chart_file(id: &str) -> String {
    format!("{id}-chart.svg")
}

/// The report of rollout `id` as `wanted`, with its content type.
pub async fn rendered(
    state: &AppState,
    id: &str,
    wanted: Wanted,
) -> Result<(&'static str, String), ApiError> {
    let report = crate::retro::report(state, id).await?;
    Ok(match wanted {
        Wanted::Report(format) => (
            format.content_type(),
            render::render(&report, format, &chart_file(id)),
        ),
        Wanted::Chart => ("image/svg+xml", render::chart(&report)),
    })
}

/// The rollout's retrospective: summary, stages with their holds and
/// approvals, gate evaluations with their evidence, failures by role and
/// site, blast radius against the plan's bound and an all-at-once push,
/// time to detect, halt and recover, the chart of hosts by state over
/// time, and the retro prompts with the facts that answer them.
#[utoipa::path(
    get,
    path = "/v1/rollouts/{id}/report",
    tag = "rollouts",
    params(("id" = String, Path, description = "rollout id, e.g. r-7"), ReportQuery),
    responses(
        (status = 200, description = "the report in the format asked for", content(
            (String = "text/markdown"),
            (String = "text/html"),
            (Object = "application/json"),
            (String = "image/svg+xml"),
        )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    caller.require(Need::View)?;
    let wanted = Wanted::parse(query.format.as_deref().unwrap_or("md"))?;
    let (content_type, body) = rendered(&state, &id, wanted).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}
