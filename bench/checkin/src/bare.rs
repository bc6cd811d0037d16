//! The references: bare axum handlers for `POST /v1/agent/checkin`.
//!
//! Set up like `sluice server` (its own process, a default multi-threaded
//! tokio runtime, `axum::serve`, the same axum build), with no auth, no
//! state, no store, each answers the same fixed `CheckinResponse` as JSON:
//!
//! - **parse** ([`Handler::Parse`]): parses the request into the same
//!   `CheckinRequest` type (`axum::Json`) and serialises the answer;
//! - **raw** ([`Handler::Raw`]): reads the whole body without parsing it and
//!   answers the answer's bytes, serialised once: the HTTP limit on
//!   loopback, what any handler costs before it looks at the body.
//!
//! Prints `listening on http://ADDR` once bound, like the server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use sluice_api::agent::{CheckinRequest, CheckinResponse, Desired};

/// Which reference handler to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Handler {
    /// Parse the `CheckinRequest`, serialise the answer
    Parse,
    /// Read the body without parsing it, answer fixed bytes
    Raw,
}

pub fn serve(listen: SocketAddr, handler: Handler) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        println!("listening on http://{}", listener.local_addr()?);
        let _ = std::io::stdout().flush();
        let app = match handler {
            Handler::Parse => Router::new().route("/v1/agent/checkin", post(parse)),
            Handler::Raw => {
                let answer = Bytes::from(serde_json::to_vec(&answer())?);
                Router::new().route(
                    "/v1/agent/checkin",
                    post(move |body: Bytes| raw(body, answer.clone())),
                )
            }
        };
        axum::serve(listener, app).await.context("serving HTTP")
    })
}

/// The fixed answer: run the version every host was imported with.
fn answer() -> CheckinResponse {
    CheckinResponse {
        components: BTreeMap::from([(
            "docker-engine".to_owned(),
            Desired {
                version: "1.12.6".to_owned(),
                rollout: None,
                payload: None,
            },
        )]),
        next_checkin_s: 60,
    }
}

async fn parse(Json(request): Json<CheckinRequest>) -> Json<CheckinResponse> {
    // The request is parsed in full; only its host id is looked at.
    std::hint::black_box(&request.host);
    Json(answer())
}

async fn raw(body: Bytes, answer: Bytes) -> impl IntoResponse {
    // The body is read in full and not looked at.
    std::hint::black_box(&body);
    ([(CONTENT_TYPE, "application/json")], answer)
}
