//! `/v1/openapi.json` is generated from the code and lists every endpoint.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_lists_every_path() {
    let app = spawn_app().await;
    let document: Value = app
        .client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let paths = document["paths"].as_object().expect("paths");
    let expected = [
        ("/v1/agent/checkin", "post"),
        ("/v1/rollouts", "get"),
        ("/v1/rollouts", "post"),
        ("/v1/rollouts/{id}", "get"),
        ("/v1/rollouts/{id}/start", "post"),
        ("/v1/rollouts/{id}/pause", "post"),
        ("/v1/rollouts/{id}/resume", "post"),
        ("/v1/rollouts/{id}/advance", "post"),
        ("/v1/rollouts/{id}/approve", "post"),
        ("/v1/rollouts/{id}/abort", "post"),
        ("/v1/rollouts/{id}/rollback", "post"),
        ("/v1/rollouts/{id}/events", "get"),
        ("/v1/rollouts/{id}/report", "get"),
        ("/v1/hosts", "get"),
        ("/v1/hosts/{id}", "get"),
        ("/v1/hosts/{id}/desired", "get"),
        ("/v1/hosts/import", "post"),
        ("/v1/components", "get"),
        ("/v1/components/{name}/stable", "put"),
        ("/v1/freeze", "get"),
        ("/v1/freeze", "put"),
        ("/v1/freeze", "delete"),
        ("/v1/inventory/ansible", "get"),
        ("/v1/tokens", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/cluster", "get"),
        ("/v1/openapi.json", "get"),
    ];
    for (path, method) in expected {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
    assert_eq!(paths.len(), 26, "{:?}", paths.keys().collect::<Vec<_>>());
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "CheckinRequest",
        "CheckinResponse",
        "RolloutDetail",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    // The vocabulary is listed, value by value.
    for (schema, values) in [
        (
            "RolloutState",
            &[
                "pending",
                "running",
                "paused",
                "completed",
                "aborted",
                "rolled_back",
            ][..],
        ),
        (
            "HostState",
            &[
                "waiting",
                "instructed",
                "healthy",
                "failed",
                "reverting",
                "reverted",
            ][..],
        ),
        ("Phase", &["progressing", "baking", "awaiting_approval"][..]),
        ("GateOutcome", &["pass", "fail", "no_data"][..]),
        ("Role", &["agent", "viewer", "operator", "admin"][..]),
        ("ReportState", &["ok", "applying", "failed"][..]),
        (
            "Action",
            &[
                "start", "pause", "resume", "advance", "approve", "abort", "rollback",
            ][..],
        ),
    ] {
        assert_eq!(
            schemas[schema]["enum"],
            serde_json::json!(values),
            "schema {schema}: {}",
            schemas[schema]
        );
    }
}
