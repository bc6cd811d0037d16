//! What the server checks beyond a value's JSON type, stated in the OpenAPI
//! document (`/v1/openapi.json`), so that a client generating requests from
//! the document sends values the server accepts: the patterns below are
//! exactly the server's rules (Rust's `char::is_control` is the
//! `\x00-\x1f\x7f-\x9f` range, its `char::is_whitespace` Unicode's
//! White_Space, spelled out since `\s` differs between regex dialects).
//!
//! The schemas are built here, by the types' `#[schema(schema_with = …)]`,
//! only with the `openapi` feature; the patterns are plain strings.

/// A name without spaces or control characters (label names, component
/// names, versions in a check-in): 1 character or more; each field gives
/// its maximum length.
pub const NAME: &str =
    r"^[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

/// Text without control characters (label values).
pub const NO_CONTROL: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";

/// Text with a character other than white space (a reason: it is trimmed,
/// and a blank one is refused).
pub const NOT_BLANK: &str =
    r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// Text without control characters and not blank (a stable version: trimmed,
/// then 1 or more characters).
pub const NOT_BLANK_NO_CONTROL: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";

/// A token's lifetime: a duration of one unit, up to a year (`30m`, `24h`,
/// `7d`). The server takes every duration of sluice's grammar up to a
/// year (`1h30m` too); every value this pattern matches is one of them.
pub const EXPIRES: &str =
    "^([1-9][0-9]{0,4}[sm]|[1-9][0-9]{0,2}h|([1-9][0-9]?|[12][0-9]{2}|3[0-5][0-9]|36[0-5])d)$";

/// A host id ([`sluice_types::HostId`]): 1 to 253 letters, digits, `.`,
/// `-`, `_` and `:`.
pub const HOST_ID: &str = "^[A-Za-z0-9._:-]{1,253}$";

/// Label selectors the server accepts (Kubernetes syntax): `role=edge`,
/// `site in (sto, lon)`, `pool!=b`, `canary`, `!canary`, comma-separated,
/// or empty for every host. The pattern spells a simpler part of the
/// grammar (unprefixed keys and values of up to 32 characters, single
/// spaces): every selector it matches is valid; `sluice_core::selector`
/// has the whole grammar.
pub const SELECTOR: &str = concat!(
    r"^((!?[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?",
    r"|[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?(=|==|!=)([A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?)?",
    r"|[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])? (in|notin) \([A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?(, [A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?)*\))",
    r"(, (!?[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?",
    r"|[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?(=|==|!=)([A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?)?",
    r"|[A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])? (in|notin) \([A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?(, [A-Za-z0-9]([-A-Za-z0-9_.]{0,30}[A-Za-z0-9])?)*\)))*)?$",
);

#[cfg(feature = "openapi")]
pub use build::*;

#[cfg(feature = "openapi")]
mod build {
    use utoipa::openapi::schema::{
        AdditionalProperties, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
    };
    use utoipa::openapi::RefOr;
    use utoipa::PartialSchema;

    use super::{EXPIRES, HOST_ID, NAME, NOT_BLANK, NOT_BLANK_NO_CONTROL, NO_CONTROL, SELECTOR};
    use crate::admin::{MAX_STABLE_VERSION_LENGTH, MAX_USES};
    use crate::agent::{
        ComponentReport, MAX_COMPONENTS, MAX_COMPONENT_NAME_LENGTH, MAX_LABELS, MAX_LABEL_LENGTH,
        MAX_VERSION_LENGTH,
    };
    use crate::vocabulary::Role;

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(SchemaType::Type(Type::String))
    }

    /// A name of 1 to `max` characters without spaces or control characters.
    pub fn name(max: usize) -> ObjectBuilder {
        string()
            .min_length(Some(1))
            .max_length(Some(max))
            .pattern(Some(NAME))
    }

    /// A host's labels: at most [`MAX_LABELS`] names of up to
    /// [`MAX_LABEL_LENGTH`] characters without spaces, values as long
    /// without control characters.
    pub fn checkin_labels() -> Schema {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property_names(Some(name(MAX_LABEL_LENGTH)))
            .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(
                string()
                    .max_length(Some(MAX_LABEL_LENGTH))
                    .pattern(Some(NO_CONTROL))
                    .build()
                    .into(),
            ))))
            .max_properties(Some(MAX_LABELS))
            .description(Some(format!(
                "At most {MAX_LABELS} labels: names of 1 to {MAX_LABEL_LENGTH} characters \
                 without spaces or control characters, values of at most {MAX_LABEL_LENGTH} \
                 characters without control characters."
            )))
            .build()
            .into()
    }

    /// What a check-in reports per component: at most [`MAX_COMPONENTS`],
    /// named with 1 to [`MAX_COMPONENT_NAME_LENGTH`] characters without
    /// spaces.
    pub fn checkin_components() -> Schema {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property_names(Some(name(MAX_COMPONENT_NAME_LENGTH)))
            .additional_properties(Some(AdditionalProperties::RefOr(ComponentReport::schema())))
            .max_properties(Some(MAX_COMPONENTS))
            .description(Some(format!(
                "At most {MAX_COMPONENTS} components, named with 1 to \
                 {MAX_COMPONENT_NAME_LENGTH} characters without spaces or control characters."
            )))
            .build()
            .into()
    }

    /// The version a check-in reports.
    pub fn checkin_version() -> Schema {
        name(MAX_VERSION_LENGTH)
            .description(Some(format!(
                "The version installed now, as `version_cmd` reads it: 1 to \
                 {MAX_VERSION_LENGTH} characters without spaces or control characters."
            )))
            .build()
            .into()
    }

    /// A component's new stable version.
    pub fn stable_version() -> Schema {
        string()
            .min_length(Some(1))
            .max_length(Some(MAX_STABLE_VERSION_LENGTH))
            .pattern(Some(NOT_BLANK_NO_CONTROL))
            .description(Some(format!(
                "1 to {MAX_STABLE_VERSION_LENGTH} characters without control characters, \
                 not blank (trimmed)."
            )))
            .build()
            .into()
    }

    /// A label selector in a query.
    pub fn selector() -> Schema {
        string()
            .pattern(Some(SELECTOR))
            .description(Some(
                "A label selector (Kubernetes syntax: `role=edge, site in (sto, lon)`, \
                 `!canary`); empty selects every host.",
            ))
            .build()
            .into()
    }

    /// A plan (the spec's plan file), as `POST /v1/rollouts` takes it in
    /// YAML or JSON: its fields and their types. Its rules across fields
    /// (stages in increasing order ending at 100 %, durations, selectors,
    /// gates) are the plan parser's, which answers 422 listing every problem.
    pub fn plan() -> Schema {
        let object = || ObjectBuilder::new().schema_type(SchemaType::Type(Type::Object));
        let amount = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
                .description(Some("A count, or a percentage such as `5%`."))
        };
        let stage = object()
            .property("name", string())
            .property(
                "percent",
                ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
                    .description(Some(
                        "Share of the hosts admitted by the end of the stage: above 0, at most \
                         100 (`10`, `0.1`, `10%`); each stage above the last, the last 100.",
                    )),
            )
            .required("percent")
            .property(
                "bake",
                string().description(Some("A duration: `30m`, `2h`.")),
            )
            .property(
                "approve",
                ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        object()
            .property(
                "name",
                string()
                    .min_length(Some(1))
                    .description(Some("Unique among rollouts.")),
            )
            .required("name")
            .property("component", string().min_length(Some(1)))
            .required("component")
            .property("version", string().min_length(Some(1)))
            .required("version")
            .property("payload", object())
            .property("selector", selector())
            .property("strategy", object())
            .property("max_in_flight", amount())
            .property(
                "stages",
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(stage)
                    .min_items(Some(1)),
            )
            .required("stages")
            .property("gates", object())
            .property(
                "on_failure",
                string().enum_values(Some(["pause", "rollback"])),
            )
            .property(
                "reversible",
                ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean)),
            )
            .property(
                "exclusive",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Boolean))
                    .description(Some(
                        "One change per host (default true): admit no host another exclusive \
                         rollout has in flight; false for harmless changes.",
                    )),
            )
            .property("windows", object())
            .property(
                "after",
                string().min_length(Some(1)).description(Some(
                    "The name of another rollout: this one starts by itself once that one \
                     completes, and never if it is rolled back or aborted. It must exist \
                     (422 otherwise).",
                )),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "A plan, in YAML or JSON. The rules across fields (stages in increasing order \
                 ending at 100 %, durations, selectors, gates) are checked by the plan parser, \
                 which answers 422 listing every problem with its line and column.",
            ))
            .examples([serde_json::json!({
                "name": "dockerd-config-42",
                "component": "dockerd-config",
                "version": "42",
                "stages": [{"percent": 10}, {"percent": 100}],
            })])
            .build()
            .into()
    }

    /// A reason: recorded in the event log, so not blank.
    pub fn reason() -> Schema {
        string()
            .min_length(Some(1))
            .pattern(Some(NOT_BLANK))
            .description(Some(
                "Why: recorded with the actor in the event log; not blank.",
            ))
            .build()
            .into()
    }

    /// `POST /v1/tokens`: an agent token names its host, no other token
    /// does.
    pub fn token_request() -> Schema {
        let name = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some("A note on whom the token is for."))
                .build()
        };
        let expires = || {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .pattern(Some(EXPIRES))
                .description(Some(
                    "The token is refused this long after its creation (`30m`, `24h`, `7d`); \
                     absent: it does not expire.",
                ))
                .build()
        };
        let reason = || {
            string()
                .min_length(Some(1))
                .pattern(Some(NOT_BLANK))
                .description(Some(
                    "Why the token is made: recorded with the actor in the audit log; not blank.",
                ))
        };
        let agent = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property("role", string().enum_values(Some([Role::Agent.as_str()])))
            .required("role")
            .property(
                "host",
                string()
                    .min_length(Some(1))
                    .max_length(Some(253))
                    .pattern(Some(HOST_ID))
                    .description(Some("The host id the token may check in as.")),
            )
            .required("host")
            .property("name", name())
            .property("expires", expires())
            .property("reason", reason())
            .required("reason")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .title(Some("agent token"));
        let enroll = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property("role", string().enum_values(Some([Role::Enroll.as_str()])))
            .required("role")
            .property(
                "selector",
                string()
                    .min_length(Some(1))
                    .max_length(Some(1024))
                    .pattern(Some(SELECTOR))
                    .description(Some(
                        "The label selector the labels of the hosts it enrolls must match.",
                    )),
            )
            .required("selector")
            .property(
                "uses",
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(1))
                    .maximum(Some(MAX_USES))
                    .description(Some("How many hosts it may enroll.")),
            )
            .required("uses")
            .property("name", name())
            .property("expires", expires())
            .property("reason", reason())
            .required("reason")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .title(Some("enrollment token"));
        let others = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .property(
                "role",
                string().enum_values(Some(
                    Role::ALL
                        .iter()
                        .filter(|&&role| !matches!(role, Role::Agent | Role::Enroll))
                        .map(|role| role.as_str()),
                )),
            )
            .required("role")
            .property("name", name())
            .property("expires", expires())
            .property("reason", reason())
            .required("reason")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .title(Some("operator token"));
        OneOfBuilder::new()
            .item(agent)
            .item(enroll)
            .item(others)
            .description(Some(
                "An agent token is bound to one host (`host` required); an enrollment token \
                 enrolls hosts matching its `selector`, `uses` times at most; viewer, operator \
                 and admin tokens have neither.",
            ))
            .build()
            .into()
    }
}
