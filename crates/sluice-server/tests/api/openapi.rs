//! `/v1/openapi.json` is generated from the code and lists every endpoint.

use serde_json::Value;

use crate::helpers::spawn_app;

/// The document a freshly started server serves.
pub async fn document() -> Value {
    let app = spawn_app().await;
    app.client
        .get(app.url("/v1/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn the_openapi_document_lists_every_path() {
    let document = document().await;
    let paths = document["paths"].as_object().expect("paths");
    let expected = [
        ("/v1/agent/checkin", "post"),
        ("/v1/agent/enroll", "post"),
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
        ("/v1/hosts/{id}/reenroll", "post"),
        ("/v1/hosts/import", "post"),
        ("/v1/components", "get"),
        ("/v1/components/{name}/stable", "put"),
        ("/v1/freeze", "get"),
        ("/v1/freeze", "put"),
        ("/v1/freeze", "delete"),
        ("/v1/inventory/ansible", "get"),
        ("/v1/tokens", "post"),
        ("/v1/tokens", "get"),
        ("/v1/tokens/{id}", "delete"),
        ("/v1/audit", "get"),
        ("/v1/events", "get"),
        ("/v1/metrics/cohorts", "get"),
        ("/v1/signin-links", "post"),
        ("/v1/budget", "get"),
        ("/v1/budget", "put"),
        ("/v1/hosts/{id}/pins/{component}", "put"),
        ("/v1/hosts/{id}/pins/{component}", "delete"),
        ("/v1/webhooks", "get"),
        ("/v1/webhooks", "post"),
        ("/v1/webhooks/{id}", "delete"),
        ("/v1/webhooks/{id}/test", "post"),
        ("/v1/rollouts/{id}/report", "get"),
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
    assert_eq!(paths.len(), 38, "{:?}", paths.keys().collect::<Vec<_>>());
    // The events stream is described as what it is.
    let events = &paths["/v1/events"]["get"]["responses"]["200"]["content"];
    assert!(events["application/json"].is_object(), "{events}");
    assert!(events["text/event-stream"].is_object(), "{events}");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "CheckinRequest",
        "CheckinResponse",
        "RolloutDetail",
        "ComparisonView",
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
        (
            "Role",
            &["agent", "enroll", "viewer", "operator", "admin"][..],
        ),
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

/// The audit log's parameters carry the constraints the server enforces.
#[tokio::test]
async fn the_audit_log_is_described_with_its_constraints() {
    let document = document().await;
    let operation = &document["paths"]["/v1/audit"]["get"];
    let parameters = operation["parameters"].as_array().expect("parameters");
    let schema = |name: &str| {
        parameters
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {operation}"))["schema"]
            .clone()
    };
    assert_eq!(schema("limit")["minimum"], 1, "{operation}");
    assert_eq!(schema("limit")["maximum"], 1000, "{operation}");
    assert_eq!(schema("after")["minimum"], 0, "{operation}");
    assert_eq!(schema("since")["format"], "date-time", "{operation}");
    assert_eq!(schema("actor")["maxLength"], 128, "{operation}");
    let kind = schema("kind").to_string();
    for word in sluice_api::vocabulary::AuditKind::ALL {
        assert!(kind.contains(&format!("\"{word}\"")), "{word} in {kind}");
    }
    for status in ["200", "400", "401", "403"] {
        assert!(operation["responses"].get(status).is_some(), "{status}");
    }
}

/// The enrollment is described with its constraints: the host id's
/// pattern and length, the labels, the answers it gives and why.
#[tokio::test]
async fn the_enrollment_states_its_constraints() {
    let document = document().await;
    let enroll = &document["paths"]["/v1/agent/enroll"]["post"];
    for status in ["201", "400", "401", "403", "413", "503"] {
        assert!(
            enroll["responses"].get(status).is_some(),
            "{status} missing: {enroll}"
        );
    }
    let schema = &document["components"]["schemas"]["EnrollRequest"];
    assert_eq!(schema["required"], serde_json::json!(["host"]), "{schema}");
    let host = &schema["properties"]["host"];
    assert_eq!(host["pattern"], "^[A-Za-z0-9._:-]{1,253}$", "{host}");
    assert_eq!(
        (host["minLength"].as_u64(), host["maxLength"].as_u64()),
        (Some(1), Some(253))
    );
    let variants = document["components"]["schemas"]["TokenRequest"]["oneOf"]
        .as_array()
        .expect("the token request is one of its kinds")
        .clone();
    let enroll = variants
        .iter()
        .find(|variant| variant["properties"]["role"]["enum"] == serde_json::json!(["enroll"]))
        .expect("an enrollment token's kind");
    assert_eq!(
        enroll["required"],
        serde_json::json!(["role", "selector", "uses", "reason"]),
        "{enroll}"
    );
    let uses = &enroll["properties"]["uses"];
    assert_eq!(uses["minimum"].as_f64(), Some(1.0), "{uses}");
    for variant in &variants {
        assert!(
            variant["properties"]["expires"]["pattern"].is_string(),
            "every token may expire: {variant}"
        );
    }
    let roles = &document["components"]["schemas"]["Role"]["enum"];
    assert!(
        roles
            .as_array()
            .is_some_and(|roles| roles.contains(&"enroll".into())),
        "{roles}"
    );
}

/// Every change of tokens and hosts takes a reason, as the rollout actions
/// do: in the token's request, in the body of a revocation and a
/// re-enrollment, in the query of an import (whose body is the fleet).
/// The token list is paged.
#[tokio::test]
async fn token_and_host_changes_require_a_reason_and_tokens_are_paged() {
    let document = document().await;
    let paths = &document["paths"];
    for variant in document["components"]["schemas"]["TokenRequest"]["oneOf"]
        .as_array()
        .expect("the token request's kinds")
    {
        let required = variant["required"].as_array().expect("required");
        assert!(required.contains(&"reason".into()), "{variant}");
        assert_eq!(
            variant["properties"]["reason"]["pattern"],
            sluice_api::schema::NOT_BLANK
        );
    }
    for (path, method) in [
        ("/v1/tokens/{id}", "delete"),
        ("/v1/hosts/{id}/reenroll", "post"),
    ] {
        let body = &paths[path][method]["requestBody"];
        assert_eq!(body["required"], true, "{path}: {body}");
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Reason",
            "{path}"
        );
    }
    let parameter = |path: &str, method: &str, name: &str| {
        paths[path][method]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|parameter| parameter["name"] == name)
            .unwrap_or_else(|| panic!("{path} has no parameter {name}"))
            .clone()
    };
    let reason = parameter("/v1/hosts/import", "post", "reason");
    assert_eq!(reason["required"], true, "{reason}");
    assert_eq!(reason["schema"]["pattern"], sluice_api::schema::NOT_BLANK);
    let after = parameter("/v1/tokens", "get", "after");
    assert_eq!(after["schema"]["pattern"], "^[0-9a-f]{16}$", "{after}");
    let limit = parameter("/v1/tokens", "get", "limit");
    assert_eq!(
        (
            limit["schema"]["minimum"].as_u64(),
            limit["schema"]["maximum"].as_u64()
        ),
        (Some(1), Some(1000))
    );
    assert!(
        document["components"]["schemas"]["TokenList"]["properties"]["next"].is_object(),
        "the list says where the next page starts"
    );
}

/// The document states what the server enforces (schemathesis checks the
/// whole of it against a real server: crates/sluice/tests/e2e/api_schema.rs).
#[tokio::test]
async fn the_openapi_document_states_the_constraints_the_server_enforces() {
    let document = document().await;
    let schemas = &document["components"]["schemas"];
    let checkin = &schemas["CheckinRequest"]["properties"];
    assert_eq!(checkin["labels"]["maxProperties"], 64, "{checkin}");
    assert_eq!(checkin["labels"]["propertyNames"]["maxLength"], 253);
    assert_eq!(checkin["components"]["maxProperties"], 256);
    assert_eq!(checkin["host"]["pattern"], sluice_api::schema::HOST_ID);
    assert_eq!(
        schemas["Reason"]["properties"]["reason"]["pattern"],
        sluice_api::schema::NOT_BLANK
    );
    let token = &schemas["TokenRequest"]["oneOf"];
    assert_eq!(
        token[0]["required"],
        serde_json::json!(["role", "host", "reason"])
    );
    assert_eq!(token[1]["properties"]["host"], Value::Null, "{token}");
    let limit = document["paths"]["/v1/hosts"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == "limit")
        .expect("limit")
        .clone();
    assert_eq!(limit["schema"]["minimum"], 1);
    assert_eq!(limit["schema"]["maximum"], 100_000);
}
