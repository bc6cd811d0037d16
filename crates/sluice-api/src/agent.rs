//! `POST /v1/agent/checkin`: the one call an agent makes; and
//! `POST /v1/agent/enroll`, which an agent with an enrollment token makes
//! once, at first contact, for a token of its own.

use std::collections::BTreeMap;

use sluice_types::HostId;

use crate::wire;

pub use crate::vocabulary::ReportState;

/// Most labels one check-in may carry.
pub const MAX_LABELS: usize = 64;
/// Most components one check-in may report.
pub const MAX_COMPONENTS: usize = 256;
/// Longest label name and label value, in characters.
pub const MAX_LABEL_LENGTH: usize = 253;
/// Longest component name, in characters.
pub const MAX_COMPONENT_NAME_LENGTH: usize = 128;
/// Longest version, in characters.
pub const MAX_VERSION_LENGTH: usize = 256;

/// A check-in the server refuses: the field at fault and what is valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidCheckin {
    pub field: String,
    pub message: String,
}

impl CheckinRequest {
    /// What the server checks beyond the JSON's shape: at most
    /// [`MAX_LABELS`] labels and [`MAX_COMPONENTS`] components, names and
    /// versions of 1 to their maximum characters without spaces or control
    /// characters, label values without control characters.
    pub fn validate(&self) -> Result<(), InvalidCheckin> {
        validate_labels(&self.labels)?;
        if self.components.len() > MAX_COMPONENTS {
            return Err(InvalidCheckin {
                field: "components".into(),
                message: format!(
                    "{} components given; a check-in may report at most {MAX_COMPONENTS}",
                    self.components.len()
                ),
            });
        }
        for (name, report) in &self.components {
            let field = || format!("components.{name}");
            validate_name(name, field, "a component name", MAX_COMPONENT_NAME_LENGTH)?;
            validate_name(
                &report.version,
                || format!("{}.version", field()),
                "a version",
                MAX_VERSION_LENGTH,
            )?;
        }
        Ok(())
    }
}

/// A host's labels as a check-in or an enrollment carries them: at most
/// [`MAX_LABELS`], names of 1 to [`MAX_LABEL_LENGTH`] characters without
/// spaces or control characters, values of at most as many without control
/// characters.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), InvalidCheckin> {
    if labels.len() > MAX_LABELS {
        return Err(InvalidCheckin {
            field: "labels".into(),
            message: format!(
                "{} labels given; a host may have at most {MAX_LABELS}",
                labels.len()
            ),
        });
    }
    for (key, value) in labels {
        validate_name(
            key,
            || format!("labels.{key}"),
            "a label name",
            MAX_LABEL_LENGTH,
        )?;
        if value.chars().count() > MAX_LABEL_LENGTH || value.chars().any(char::is_control) {
            return Err(InvalidCheckin {
                field: format!("labels.{key}"),
                message: format!(
                    "a label value must be at most {MAX_LABEL_LENGTH} characters without control characters"
                ),
            });
        }
    }
    Ok(())
}

/// `field` names the field in an error; it is built only then (a check-in
/// is answered tens of thousands of times a second).
fn validate_name(
    text: &str,
    field: impl FnOnce() -> String,
    what: &str,
    max: usize,
) -> Result<(), InvalidCheckin> {
    let valid = !text.is_empty()
        && text.chars().count() <= max
        && !text.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(InvalidCheckin {
            field: field(),
            message: format!("{text:?} is not {what}; write 1 to {max} characters without spaces"),
        })
    }
}

wire! {
/// What an agent reports: who it is, its labels, and per component what it
/// runs and how that is going.
#[serde(deny_unknown_fields)]
pub struct CheckinRequest {
    /// The host's stable id, its FQDN.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253))]
    pub host: HostId,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::checkin_labels))]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::checkin_components))]
    pub components: BTreeMap<String, ComponentReport>,
}
}

wire! {
#[serde(deny_unknown_fields)]
pub struct ComponentReport {
    /// The version installed now, as `version_cmd` reads it.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::checkin_version))]
    pub version: String,
    pub state: ReportState,
    /// The last lines of output of a failed apply or health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The host ran its desired version and was then found at `version`
    /// outside an apply (someone changed it by hand). Absent (an older
    /// agent, or nothing to say) means not drifted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drifted: bool,
}
}

wire! {
/// The desired version of every component sluice manages for this host; a
/// component it does not manage is absent and the agent leaves it alone.
pub struct CheckinResponse {
    pub components: BTreeMap<String, Desired>,
    /// When to check in next, before the agent's jitter.
    pub next_checkin_s: u64,
}
}

wire! {
pub struct Desired {
    pub version: String,
    /// The rollout that sets this version, if any (else the stable version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// Opaque JSON for the agent's commands (`SLUICE_PAYLOAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}
}

wire! {
/// `POST /v1/agent/enroll` (with an enrollment token): who the host is and
/// its labels, which must match the enrollment token's selector.
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The host's stable id, its FQDN: the id it will check in as.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[A-Za-z0-9._:-]{1,253}$", min_length = 1, max_length = 253))]
    pub host: HostId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
}

wire! {
/// The host's own token, shown once: bound to the host and to the
/// enrollment's selector.
pub struct EnrollResponse {
    /// The secret, for the agent's `token_file`.
    pub token: String,
    /// The token's id (`sluice token list`).
    pub id: String,
    pub host: String,
    /// The host's labels must keep matching it at every check-in.
    pub selector: String,
}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> CheckinRequest {
        serde_json::from_value(json).expect("a check-in")
    }

    #[test]
    fn a_valid_checkin_passes() {
        let valid = request(serde_json::json!({
            "host": "sto-a1.example.net",
            "labels": {"role": "edge", "note": "two words"},
            "components": {"docker-engine": {"version": "1.12.6", "state": "ok"}},
        }));
        assert_eq!(valid.validate(), Ok(()));
    }

    #[test]
    fn an_invalid_checkin_names_the_field_at_fault() {
        for (json, field) in [
            (
                serde_json::json!({"host": "h", "labels": {"": "x"}}),
                "labels.",
            ),
            (
                serde_json::json!({"host": "h", "labels": {"a b": "x"}}),
                "labels.a b",
            ),
            (
                serde_json::json!({"host": "h", "labels": {"role": "a\u{7}"}}),
                "labels.role",
            ),
            (
                serde_json::json!({"host": "h", "components": {"c": {"version": "", "state": "ok"}}}),
                "components.c.version",
            ),
            (
                serde_json::json!({"host": "h", "components": {"c\u{85}": {"version": "1", "state": "ok"}}}),
                "components.c\u{85}",
            ),
        ] {
            let error = request(json.clone()).validate().expect_err("refused");
            assert_eq!(error.field, field, "{json}: {error}");
        }
        let labels: serde_json::Map<_, _> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), serde_json::Value::from("v")))
            .collect();
        let error = request(serde_json::json!({"host": "h", "labels": labels}))
            .validate()
            .expect_err("too many labels");
        assert_eq!(error.field, "labels");
    }
}
