//! The baseline: a bare axum handler for `POST /v1/agent/checkin`.
//!
//! Set up like `sluice server` (its own process, a default multi-threaded
//! tokio runtime, `axum::serve`, the same axum build), it parses the
//! request into the same `CheckinRequest` type and answers a fixed
//! `CheckinResponse` as JSON — no auth, no state, no store. Prints
//! `listening on http://ADDR` once bound, like the server.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;

use anyhow::Context;
use axum::routing::post;
use axum::{Json, Router};
use sluice_api::agent::{CheckinRequest, CheckinResponse, Desired};

pub fn serve(listen: SocketAddr) -> anyhow::Result<()> {
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
        let app = Router::new().route("/v1/agent/checkin", post(checkin));
        axum::serve(listener, app).await.context("serving HTTP")
    })
}

async fn checkin(Json(request): Json<CheckinRequest>) -> Json<CheckinResponse> {
    // The request is parsed in full; only its host id is looked at.
    std::hint::black_box(&request.host);
    Json(CheckinResponse {
        components: BTreeMap::from([(
            "docker-engine".to_owned(),
            Desired {
                version: "1.12.6".to_owned(),
                rollout: None,
                payload: None,
            },
        )]),
        next_checkin_s: 60,
    })
}
