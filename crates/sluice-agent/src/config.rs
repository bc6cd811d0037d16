//! The agent's configuration: the TOML file of the spec (`agent.toml`), read
//! into an in-memory [`FileConfig`], which gives the loop's [`AgentConfig`]
//! and the shell commands of [`crate::ShellOps`].
//!
//! Every problem is reported as `FILE:LINE:COLUMN: FIELD: MESSAGE`, like
//! plan errors; unknown keys are rejected with their name and place.
//!
//! `server` is one URL or a list of them ([`Servers`]), for a fleet without
//! a load balancer in front of its sluice replicas. `artifact_dir` and
//! `artifact_max_size` say where the artifacts payloads name are kept and
//! how large one may be ([`Artifacts`]); a component's `enforce` makes the
//! agent re-apply its desired version when it finds the host drifted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use sluice_api::duration::DurationError;
use sluice_api::HostId;
use sluice_client::{ClientError, ServerUrl};
use toml::Spanned;

use crate::artifact::{parse_size, Artifacts, DEFAULT_ARTIFACT_DIR, DEFAULT_MAX_SIZE};

/// Where the agent keeps its state unless `state_file` says otherwise.
pub const DEFAULT_STATE_FILE: &str = "/var/lib/sluice-agent/state.json";
/// The check-in interval unless `interval` says otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// How long one command may run unless a component's `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// The shortest `interval` and `health_interval`.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What the loop needs to know, independent of any file: the servers it
/// checks in with, who the host is, how often to check in, its labels, the
/// components it manages and where (if anywhere) to keep its state. The
/// simulated agents of `sluice demo` build this directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Where check-ins go, in the order they are tried.
    pub servers: Servers,
    /// The host id sent with every check-in (the FQDN by default).
    pub id: HostId,
    /// Time between check-ins until the server names its own, jittered ±20 %.
    pub interval: Duration,
    /// Labels sent with every check-in (merged under those of `labels_cmd`).
    pub labels: BTreeMap<String, String>,
    /// The components this agent reports and changes, in file order.
    pub components: Vec<ComponentConfig>,
    /// Where the state survives restarts; `None` keeps it in memory only.
    pub state_file: Option<PathBuf>,
    /// Where the artifacts payloads name are downloaded to; `None`: this
    /// agent downloads nothing, and an apply whose payload names an
    /// artifact fails.
    pub artifacts: Option<Artifacts>,
}

/// The sluice servers an agent checks in with, in the order it tries them:
/// at least one, none twice. Check-ins go to one of them; when it cannot
/// be reached the agent moves on to the next (see [`crate::Agent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Servers(Vec<ServerUrl>);

/// Why a list of servers is not [`Servers`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServersError {
    #[error("the list of servers is empty; give at least one URL, such as \"https://sluice.example.net:7070\"")]
    Empty,
    /// Entry `index` is the same server as entry `first` (0-based).
    #[error("{url} is also entry {first} of the list; list each server once")]
    Duplicate {
        index: usize,
        first: usize,
        url: ServerUrl,
    },
}

impl Servers {
    /// The list, tried in this order; refused when empty or when a server
    /// appears twice (however spelt: `https://a:443` is `https://a/`).
    pub fn new(urls: Vec<ServerUrl>) -> Result<Servers, ServersError> {
        if urls.is_empty() {
            return Err(ServersError::Empty);
        }
        for (index, url) in urls.iter().enumerate() {
            if let Some(first) = urls[..index].iter().position(|earlier| earlier == url) {
                return Err(ServersError::Duplicate {
                    index,
                    first,
                    url: url.clone(),
                });
            }
        }
        Ok(Servers(urls))
    }

    /// The first server of the list.
    pub fn first(&self) -> &ServerUrl {
        // Never empty: `new` refuses an empty list.
        &self.0[0]
    }

    /// Every server, in the order they are tried.
    pub fn as_slice(&self) -> &[ServerUrl] {
        &self.0
    }
}

/// One server alone.
impl From<ServerUrl> for Servers {
    fn from(url: ServerUrl) -> Servers {
        Servers(vec![url])
    }
}

/// One `[[component]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentConfig {
    pub name: String,
    pub mode: Mode,
    /// How long each of its commands may run before its process group is killed.
    pub timeout: Duration,
    /// How often its health is checked while it runs its desired version;
    /// `None`: at every check-in.
    pub health_interval: Option<Duration>,
    /// Re-apply the desired version when the host is found at another one
    /// outside an apply (drift); otherwise drift is only reported.
    pub enforce: bool,
}

/// How a component reaches its desired version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The agent runs `apply_cmd`, then checks the version and the health.
    Apply,
    /// The agent writes the desired versions to this JSON facts file for
    /// Puppet/Facter and reports what `version_cmd` says.
    Facts { facts_file: PathBuf },
}

/// The shell commands of one component (run with `sh -c`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Commands {
    pub version_cmd: String,
    pub apply_cmd: Option<String>,
    pub health_cmd: Option<String>,
}

/// The whole configuration file, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// `token_file`: where the agent token is (read at start; written by
    /// an enrollment when it does not exist yet).
    pub token_file: Option<PathBuf>,
    /// `enroll_token_file`: an enrollment token, with which the agent gets
    /// its own token at first contact while `token_file` does not exist.
    pub enroll_token_file: Option<PathBuf>,
    /// `ca_file`: a PEM CA certificate to trust (beside the system's) for
    /// an `https://` server whose certificate a private CA signed.
    pub ca_file: Option<PathBuf>,
    /// `labels_cmd`: prints a JSON object of extra labels.
    pub labels_cmd: Option<String>,
    pub agent: AgentConfig,
    /// The commands of each component, by name.
    pub commands: BTreeMap<String, Commands>,
}

/// A configuration problem, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The key at fault (`component[1].timeout`), when known.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        match &self.field {
            Some(field) => write!(f, ": {field}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Spanned<RawServers>,
    token_file: Option<PathBuf>,
    enroll_token_file: Option<Spanned<PathBuf>>,
    ca_file: Option<PathBuf>,
    id: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    labels_cmd: Option<String>,
    state_file: Option<PathBuf>,
    artifact_dir: Option<PathBuf>,
    artifact_max_size: Option<Spanned<String>>,
    #[serde(default)]
    component: Vec<Spanned<RawComponent>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: Spanned<String>,
    version_cmd: String,
    apply_cmd: Option<Spanned<String>>,
    health_cmd: Option<Spanned<String>>,
    health_interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    facts_file: Option<Spanned<PathBuf>>,
    enforce: Option<Spanned<bool>>,
}

/// `server`: one URL, or an array of them. A hand-written `Deserialize`,
/// since an untagged enum would lose the places of the array's entries.
enum RawServers {
    One(String),
    Many(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawServers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawServers, D::Error> {
        struct Either;

        impl<'de> Visitor<'de> for Either {
            type Value = RawServers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a server URL, or an array of server URLs")
            }

            fn visit_str<E: de::Error>(self, url: &str) -> Result<RawServers, E> {
                Ok(RawServers::One(url.to_owned()))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawServers, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element()? {
                    urls.push(url);
                }
                Ok(RawServers::Many(urls))
            }
        }

        deserializer.deserialize_any(Either)
    }
}

impl FileConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
            file: path.to_owned(),
            position: None,
            field: None,
            message: format!("cannot read the configuration: {error}"),
        })?;
        FileConfig::parse(path, &text)
    }

    /// Parses and validates `text`, read from `file` (used in messages only).
    /// `id` defaults to the host's FQDN.
    pub fn parse(file: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        let locate =
            |span: Option<Range<usize>>, field: Option<String>, message: String| ConfigError {
                file: file.to_owned(),
                position: span.map(|span| line_column(text, span.start)),
                field,
                message,
            };
        let raw: RawConfig = toml::from_str(text).map_err(|error| {
            let (field, message) = split_toml_message(error.message());
            locate(error.span(), field, message)
        })?;

        let servers = parse_servers(raw.server, &locate)?;
        let id = match raw.id {
            Some(id) => {
                let value = id.get_ref().trim().to_owned();
                if value.is_empty() {
                    return Err(locate(
                        Some(id.span()),
                        Some("id".into()),
                        "the host id is empty; leave `id` out to use the FQDN".into(),
                    ));
                }
                HostId::parse(value).map_err(|error| {
                    locate(Some(id.span()), Some("id".into()), error.to_string())
                })?
            }
            None => HostId::parse(fqdn()).map_err(|error| {
                locate(
                    None,
                    Some("id".into()),
                    format!("the host's FQDN cannot be its id: {error}; set `id` in the config"),
                )
            })?,
        };
        // Every duration: the grammar's own message, else why the value
        // does not fit its key.
        let duration = |spanned: &Spanned<String>,
                        field: String,
                        fits: &dyn Fn(Duration) -> bool,
                        otherwise: &str| {
            let located = |message| locate(Some(spanned.span()), Some(field.clone()), message);
            let text = spanned.get_ref();
            match parse_duration(text) {
                Ok(value) if fits(value) => Ok(value),
                Ok(_) => Err(located(format!("{text:?} {otherwise}"))),
                Err(error) => Err(located(error.to_string())),
            }
        };
        let interval = match &raw.interval {
            Some(interval) => duration(
                interval,
                "interval".into(),
                &|value| value >= MIN_INTERVAL,
                "is not a valid interval; write at least 1s, such as 30s, 5m or 1h",
            )?,
            None => DEFAULT_INTERVAL,
        };
        let labels = raw
            .labels
            .into_iter()
            .map(|(key, value)| (key, value.into_inner()))
            .collect();
        let max_size = match &raw.artifact_max_size {
            Some(size) => parse_size(size.get_ref()).map_err(|message| {
                locate(Some(size.span()), Some("artifact_max_size".into()), message)
            })?,
            None => DEFAULT_MAX_SIZE,
        };
        let artifacts = Artifacts {
            dir: raw
                .artifact_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_ARTIFACT_DIR)),
            max_size,
        };

        let mut components = Vec::new();
        let mut commands = BTreeMap::new();
        let mut seen = BTreeSet::new();
        for (index, spanned) in raw.component.into_iter().enumerate() {
            let component_span = spanned.span();
            let raw = spanned.into_inner();
            let field = |key: &str| format!("component[{index}].{key}");
            let name = raw.name.get_ref().trim().to_owned();
            if name.is_empty() {
                return Err(locate(
                    Some(raw.name.span()),
                    Some(field("name")),
                    "a component needs a name, such as \"docker-engine\"".into(),
                ));
            }
            if !seen.insert(name.clone()) {
                return Err(locate(
                    Some(raw.name.span()),
                    Some(field("name")),
                    format!("component {name:?} is configured twice; each name may appear once"),
                ));
            }
            let timeout = match &raw.timeout {
                Some(timeout) => duration(
                    timeout,
                    field("timeout"),
                    &|value| !value.is_zero(),
                    "is not a valid timeout; write a positive duration such as 30s, 10m or 1h",
                )?,
                None => DEFAULT_TIMEOUT,
            };
            let health_interval = match &raw.health_interval {
                Some(every) => Some(duration(
                    every,
                    field("health_interval"),
                    &|value| value >= MIN_INTERVAL,
                    "is not a valid health_interval; write at least 1s, such as 30s, 5m or 1h, \
                     or leave it out to check at every check-in",
                )?),
                None => None,
            };
            let mode_name = raw.mode.as_ref().map(|mode| mode.get_ref().as_str());
            let mode = match mode_name {
                None | Some("apply") => {
                    if raw.apply_cmd.is_none() {
                        return Err(locate(
                            Some(component_span),
                            Some(field("apply_cmd")),
                            format!(
                                "component {name:?} has no apply_cmd; give one, or set mode = \"facts\" with a facts_file"
                            ),
                        ));
                    }
                    if let Some(facts_file) = &raw.facts_file {
                        return Err(locate(
                            Some(facts_file.span()),
                            Some(field("facts_file")),
                            "facts_file is used only with mode = \"facts\"".into(),
                        ));
                    }
                    if let (Some(every), None) = (&raw.health_interval, &raw.health_cmd) {
                        return Err(locate(
                            Some(every.span()),
                            Some(field("health_interval")),
                            format!(
                                "component {name:?} has no health_cmd, so there is nothing to run every health_interval; give a health_cmd or remove health_interval"
                            ),
                        ));
                    }
                    Mode::Apply
                }
                Some("facts") => {
                    if let Some(apply_cmd) = &raw.apply_cmd {
                        return Err(locate(
                            Some(apply_cmd.span()),
                            Some(field("apply_cmd")),
                            "a component in mode = \"facts\" is applied by config management, not by apply_cmd; remove it".into(),
                        ));
                    }
                    if let Some(every) = &raw.health_interval {
                        return Err(locate(
                            Some(every.span()),
                            Some(field("health_interval")),
                            "a component in mode = \"facts\" has no health check (config management checks it), so there is nothing to run every health_interval; remove it".into(),
                        ));
                    }
                    if let Some(health_cmd) = &raw.health_cmd {
                        return Err(locate(
                            Some(health_cmd.span()),
                            Some(field("health_cmd")),
                            "a component in mode = \"facts\" is checked by config management; the agent reports what version_cmd says, so remove health_cmd".into(),
                        ));
                    }
                    if let Some(enforce) = &raw.enforce {
                        return Err(locate(
                            Some(enforce.span()),
                            Some(field("enforce")),
                            "a component in mode = \"facts\" is enforced by config management, which applies the desired version at its every run; remove enforce".into(),
                        ));
                    }
                    let Some(facts_file) = raw.facts_file.as_ref() else {
                        return Err(locate(
                            Some(component_span),
                            Some(field("facts_file")),
                            format!(
                                "component {name:?} in mode = \"facts\" needs a facts_file, such as \"/etc/facter/facts.d/sluice.json\""
                            ),
                        ));
                    };
                    Mode::Facts {
                        facts_file: facts_file.get_ref().clone(),
                    }
                }
                Some(other) => {
                    return Err(locate(
                        raw.mode.as_ref().map(Spanned::span),
                        Some(field("mode")),
                        format!("{other:?} is not a mode; expected \"apply\" or \"facts\""),
                    ))
                }
            };
            commands.insert(
                name.clone(),
                Commands {
                    version_cmd: raw.version_cmd,
                    apply_cmd: raw.apply_cmd.map(Spanned::into_inner),
                    health_cmd: raw.health_cmd.map(Spanned::into_inner),
                },
            );
            components.push(ComponentConfig {
                name,
                mode,
                timeout,
                health_interval,
                enforce: raw.enforce.is_some_and(Spanned::into_inner),
            });
        }
        if let (Some(enroll), None) = (&raw.enroll_token_file, &raw.token_file) {
            return Err(locate(
                Some(enroll.span()),
                Some("enroll_token_file".into()),
                "needs token_file: where the token the enrollment gives is kept (such as /etc/sluice/agent.token)".into(),
            ));
        }
        Ok(FileConfig {
            token_file: raw.token_file,
            enroll_token_file: raw.enroll_token_file.map(Spanned::into_inner),
            ca_file: raw.ca_file,
            labels_cmd: raw.labels_cmd,
            agent: AgentConfig {
                servers,
                id,
                interval,
                labels,
                components,
                state_file: Some(
                    raw.state_file
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_FILE)),
                ),
                artifacts: Some(artifacts),
            },
            commands,
        })
    }
}

/// `server`, one URL or an array of them: each entry a server URL (located
/// as `server` or `server[INDEX]`), the list neither empty nor with a
/// server twice.
fn parse_servers(
    server: Spanned<RawServers>,
    locate: &dyn Fn(Option<Range<usize>>, Option<String>, String) -> ConfigError,
) -> Result<Servers, ConfigError> {
    let span = server.span();
    // Each URL with its place, and its key: `server`, or
    // `server[INDEX]` in an array.
    let entries: Vec<(Range<usize>, String, String)> = match server.into_inner() {
        RawServers::One(url) => vec![(span.clone(), "server".to_owned(), url)],
        RawServers::Many(urls) => urls
            .into_iter()
            .enumerate()
            .map(|(index, url)| (url.span(), format!("server[{index}]"), url.into_inner()))
            .collect(),
    };
    let mut urls = Vec::with_capacity(entries.len());
    for (span, field, text) in &entries {
        let url = ServerUrl::parse(text).map_err(|error| {
            let reason = match error {
                ClientError::InvalidUrl { reason, .. } => reason,
                other => other.to_string(),
            };
            let text = text.trim();
            locate(
                Some(span.clone()),
                Some(field.clone()),
                format!("{text:?} is not a server URL ({reason}); write http://HOST:PORT or https://HOST:PORT"),
            )
        })?;
        urls.push(url);
    }
    Servers::new(urls).map_err(|error| {
        let (span, field) = match &error {
            ServersError::Empty => (span, "server".to_owned()),
            ServersError::Duplicate { index, .. } => match entries.get(*index) {
                Some((span, field, _)) => (span.clone(), field.clone()),
                None => (span, "server".to_owned()),
            },
        };
        locate(Some(span), Some(field), error.to_string())
    })
}

/// A duration in sluice's one grammar (`30s`, `15m`, `2h`, `1d`, `1h30m`;
/// whole seconds, at most a year), the one plans use:
/// [`sluice_api::duration`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    sluice_api::duration::parse_seconds(text).map(Duration::from_secs)
}

/// The host's fully qualified name: `hostname --fqdn` when it answers,
/// else the kernel's node name.
pub fn fqdn() -> String {
    let from_command = std::process::Command::new("hostname")
        .arg("--fqdn")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace));
    from_command.unwrap_or_else(|| {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    })
}

/// 1-based line and column (in characters) of byte `offset` of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |line| line.chars().count())
        + 1;
    (line, column)
}

/// serde's "unknown field `tiemout`, expected one of …" names the key: make
/// it the error's field.
fn split_toml_message(message: &str) -> (Option<String>, String) {
    let message = message.trim();
    for prefix in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.find('`') {
                return (Some(rest[..end].to_owned()), message.to_owned());
            }
        }
    }
    (None, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, String> {
        FileConfig::parse(Path::new("agent.toml"), text).map_err(|error| error.to_string())
    }

    fn url(text: &str) -> ServerUrl {
        ServerUrl::parse(text).expect("a valid URL")
    }

    const SPEC_EXAMPLE: &str = r#"
server = "https://sluice.example.net:7070"
token_file = "/etc/sluice/agent.token"
id = "sto-playlist-a1.example.net"
interval = "60s"
labels = { role = "playlist", site = "sto", pool = "a" }

[[component]]
name = "docker-engine"
version_cmd = "dpkg-query -W -f='${Version}' docker-engine"
apply_cmd = "apt-get install -y docker-engine=$SLUICE_VERSION"
health_cmd = "docker info >/dev/null"
timeout = "10m"

[[component]]
name = "dockerd-config"
mode = "facts"
facts_file = "/etc/facter/facts.d/sluice.json"
version_cmd = "cat /etc/docker/daemon.json.version"
"#;

    #[test]
    fn the_spec_example_parses() {
        let config = parse(SPEC_EXAMPLE).expect("the spec's example is valid");
        assert_eq!(
            config.agent.servers,
            Servers::from(url("https://sluice.example.net:7070"))
        );
        assert_eq!(config.agent.id, "sto-playlist-a1.example.net");
        assert_eq!(config.agent.interval, Duration::from_secs(60));
        assert_eq!(config.agent.labels["role"], "playlist");
        assert_eq!(config.agent.components.len(), 2);
        assert_eq!(config.agent.components[0].timeout, Duration::from_secs(600));
        assert_eq!(config.agent.components[0].mode, Mode::Apply);
        assert_eq!(
            config.agent.components[1].mode,
            Mode::Facts {
                facts_file: "/etc/facter/facts.d/sluice.json".into()
            }
        );
        assert_eq!(
            config.agent.state_file.as_deref(),
            Some(Path::new(DEFAULT_STATE_FILE))
        );
        assert_eq!(
            config.commands["docker-engine"].health_cmd.as_deref(),
            Some("docker info >/dev/null")
        );
    }

    #[test]
    fn defaults_fill_id_and_interval() {
        let config = parse("server = \"http://127.0.0.1:7070\"\n").expect("valid");
        assert_eq!(config.agent.interval, DEFAULT_INTERVAL);
        assert!(!config.agent.id.is_empty());
        assert_eq!(config.agent.id.as_str(), fqdn());
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let error = parse("server = \"http://a:1\"\n\n[[component]]\nname = \"x\"\nversion_cmd = \"true\"\napply_cmd = \"true\"\ntiemout = \"1m\"\n")
            .expect_err("an unknown key is rejected");
        assert!(
            error.starts_with("agent.toml:7:1: tiemout: unknown field `tiemout`"),
            "{error}"
        );
        let error = parse("server = \"http://a:1\"\nintervall = \"1m\"\n").expect_err("rejected");
        assert!(error.starts_with("agent.toml:2:1: intervall: "), "{error}");
    }

    #[test]
    fn bad_values_name_the_field_and_what_would_be_valid() {
        let cases = [
            (
                "server = \"a:1\"\n",
                "agent.toml:1:10: server: \"a:1\" is not a server URL",
            ),
            (
                "server = \"http://a:1\"\ninterval = \"0s\"\n",
                "agent.toml:2:12: interval: \"0s\" is not a valid interval",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"true\"\napply_cmd = \"x\"\nmode = \"puppet\"\n",
                "agent.toml:6:8: component[0].mode: \"puppet\" is not a mode; expected \"apply\" or \"facts\"",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"true\"\n",
                "component[0].apply_cmd: component \"c\" has no apply_cmd",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"true\"\nmode = \"facts\"\n",
                "component[0].facts_file: component \"c\" in mode = \"facts\" needs a facts_file",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"true\"\napply_cmd = \"x\"\ntimeout = \"soon\"\n",
                "agent.toml:6:11: component[0].timeout: expected a number: \"soon\" is not a duration; write a number followed by s, m, h or d, such as 30s, 15m, 2h, 1d",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"true\"\napply_cmd = \"x\"\ntimeout = \"0s\"\n",
                "agent.toml:6:11: component[0].timeout: \"0s\" is not a valid timeout; write a positive duration",
            ),
            (
                "server = \"http://a:1\"\ninterval = \"500ms\"\n",
                "agent.toml:2:12: interval: expected a number: \"500ms\" is not a duration; write a number followed by s, m, h or d",
            ),
            (
                "server = \"http://a:1\"\ninterval = \"400d\"\n",
                "agent.toml:2:12: interval: longer than a year: \"400d\" is not a duration",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\napply_cmd = \"x\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\napply_cmd = \"x\"\n",
                "agent.toml:7:8: component[1].name: component \"c\" is configured twice",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\nmode = \"facts\"\nfacts_file = \"f\"\nhealth_cmd = \"h\"\n",
                "agent.toml:7:14: component[0].health_cmd: a component in mode = \"facts\" is checked by config management",
            ),
            ("token_file = \"t\"\n", "missing field `server`"),
            (
                "server = \"http://a:1\"\nenroll_token_file = \"/etc/sluice/enroll.token\"\n",
                "agent.toml:2:21: enroll_token_file: needs token_file",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(
                error.contains(expected),
                "{text}\n→ {error}\nwanted {expected}"
            );
        }
    }

    #[test]
    fn an_enrollment_token_file_goes_with_a_token_file() {
        let config = parse(
            "server = \"http://a:1\"\ntoken_file = \"/etc/sluice/agent.token\"\nenroll_token_file = \"/etc/sluice/enroll.token\"\n",
        )
        .expect("valid");
        assert_eq!(
            config.enroll_token_file.as_deref(),
            Some(Path::new("/etc/sluice/enroll.token"))
        );
        assert_eq!(parse(SPEC_EXAMPLE).expect("valid").enroll_token_file, None);
    }

    #[test]
    fn server_is_one_url_or_a_list_tried_in_order() {
        let one = parse("server = \"https://a.example.net:7070\"\n").expect("valid");
        assert_eq!(
            one.agent.servers.as_slice(),
            [url("https://a.example.net:7070")]
        );
        let list =
            parse("server = [\"https://a.example.net:7070\", \"https://b.example.net:7070/\"]\n")
                .expect("valid");
        assert_eq!(
            list.agent.servers.as_slice(),
            [
                url("https://a.example.net:7070"),
                url("https://b.example.net:7070")
            ]
        );
        assert_eq!(
            *list.agent.servers.first(),
            url("https://a.example.net:7070")
        );
        let multiline = parse(
            "server = [\n  \"http://a:7070\",\n  \"http://b:7070\",\n  \"http://c:7070\",\n]\n",
        )
        .expect("valid");
        assert_eq!(multiline.agent.servers.as_slice().len(), 3);
    }

    #[test]
    fn a_bad_server_list_names_the_entry_and_its_place() {
        let cases = [
            (
                "server = []\n",
                "agent.toml:1:10: server: the list of servers is empty; give at least one URL",
            ),
            (
                "server = [\"http://a:1\", \"b:1\"]\n",
                "agent.toml:1:25: server[1]: \"b:1\" is not a server URL (it has no scheme); write http://HOST:PORT or https://HOST:PORT",
            ),
            (
                "server = [\n  \"http://a:1\",\n  \"http://b:1\",\n  \"ftp://c:1\",\n]\n",
                "agent.toml:4:3: server[2]: \"ftp://c:1\" is not a server URL (the scheme is \"ftp\")",
            ),
            (
                "server = [\"https://a:7070\", \"https://b:7070\", \"https://A:7070/\"]\n",
                "agent.toml:1:47: server[2]: https://a:7070 is also entry 0 of the list; list each server once",
            ),
            (
                "server = \"http://a:1/?x=1\"\n",
                "agent.toml:1:10: server: \"http://a:1/?x=1\" is not a server URL (it has a query or fragment)",
            ),
            (
                "server = [\"http://a:1\", 7]\n",
                "agent.toml:1:25: invalid type: integer `7`, expected a string",
            ),
            (
                "server = 7\n",
                "agent.toml:1:10: invalid type: integer `7`, expected a server URL, or an array of server URLs",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(text);
            assert!(
                error.starts_with(expected),
                "{text}\n→ {error}\nwanted {expected}"
            );
        }
    }

    #[test]
    fn servers_are_never_empty_nor_listed_twice() {
        assert_eq!(Servers::new(Vec::new()), Err(ServersError::Empty));
        assert_eq!(
            Servers::new(vec![
                url("http://a:1"),
                url("http://b:1"),
                url("http://b:1/")
            ]),
            Err(ServersError::Duplicate {
                index: 2,
                first: 1,
                url: url("http://b:1")
            })
        );
    }

    #[test]
    fn durations_are_the_plans_grammar() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        for text in ["10", "m", "", "250ms", "1.5h", "367d"] {
            let error = parse_duration(text).expect_err(text);
            assert_eq!(
                Err(error),
                sluice_api::duration::parse_seconds(text),
                "one grammar: {text}"
            );
        }
    }

    const WITH_HEALTH: &str = "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\napply_cmd = \"a\"\nhealth_cmd = \"h\"\n";

    #[test]
    fn health_interval_is_per_component_and_optional() {
        let config = parse(&format!("{WITH_HEALTH}health_interval = \"5m\"\n[[component]]\nname = \"d\"\nversion_cmd = \"v\"\napply_cmd = \"a\"\nhealth_cmd = \"h\"\n"))
            .expect("valid");
        let intervals: Vec<(&str, Option<Duration>)> = config
            .agent
            .components
            .iter()
            .map(|c| (c.name.as_str(), c.health_interval))
            .collect();
        assert_eq!(
            intervals,
            [("c", Some(Duration::from_secs(300))), ("d", None)],
            "d, without one, is checked at every check-in"
        );
        assert!(parse(SPEC_EXAMPLE)
            .expect("valid")
            .agent
            .components
            .iter()
            .all(|c| c.health_interval.is_none()));
    }

    #[test]
    fn enforce_is_per_apply_component_and_off_by_default() {
        let config = parse(&format!(
            "{WITH_HEALTH}enforce = true\n[[component]]\nname = \"d\"\nversion_cmd = \"v\"\napply_cmd = \"a\"\n"
        ))
        .expect("valid");
        let enforced: Vec<(&str, bool)> = config
            .agent
            .components
            .iter()
            .map(|c| (c.name.as_str(), c.enforce))
            .collect();
        assert_eq!(enforced, [("c", true), ("d", false)]);
        let error = parse(
            "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\nmode = \"facts\"\nfacts_file = \"f\"\nenforce = true\n",
        )
        .expect_err("facts mode is enforced by config management");
        assert!(
            error.starts_with("agent.toml:7:11: component[0].enforce: a component in mode = \"facts\" is enforced by config management"),
            "{error}"
        );
        let error = parse(&format!("{WITH_HEALTH}enforce = \"yes\"\n")).expect_err("a boolean");
        assert!(error.starts_with("agent.toml:7:11: "), "{error}");
    }

    #[test]
    fn artifacts_have_a_cache_and_a_cap_by_default() {
        let config = parse("server = \"http://a:1\"\n").expect("valid");
        assert_eq!(
            config.agent.artifacts,
            Some(Artifacts {
                dir: DEFAULT_ARTIFACT_DIR.into(),
                max_size: DEFAULT_MAX_SIZE,
            })
        );
        let config = parse(
            "server = \"http://a:1\"\nartifact_dir = \"/srv/cache\"\nartifact_max_size = \"200MiB\"\n",
        )
        .expect("valid");
        assert_eq!(
            config.agent.artifacts,
            Some(Artifacts {
                dir: "/srv/cache".into(),
                max_size: 200 << 20,
            })
        );
        let error = parse("server = \"http://a:1\"\nartifact_max_size = \"big\"\n")
            .expect_err("not a size");
        assert_eq!(
            error,
            "agent.toml:2:21: artifact_max_size: \"big\" is not a size; write a whole number of bytes with a unit, such as 512MiB, 2GiB or 100MB"
        );
    }

    #[test]
    fn health_interval_is_rejected_where_it_cannot_apply() {
        let cases = [
            (
                format!("{WITH_HEALTH}health_interval = \"0s\"\n"),
                "agent.toml:7:19: component[0].health_interval: \"0s\" is not a valid health_interval; write at least 1s",
            ),
            (
                format!("{WITH_HEALTH}health_interval = \"often\"\n"),
                "agent.toml:7:19: component[0].health_interval: expected a number: \"often\" is not a duration",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\napply_cmd = \"a\"\nhealth_interval = \"1m\"\n".to_owned(),
                "agent.toml:6:19: component[0].health_interval: component \"c\" has no health_cmd, so there is nothing to run every health_interval",
            ),
            (
                "server = \"http://a:1\"\n[[component]]\nname = \"c\"\nversion_cmd = \"v\"\nmode = \"facts\"\nfacts_file = \"f\"\nhealth_interval = \"1m\"\n".to_owned(),
                "agent.toml:7:19: component[0].health_interval: a component in mode = \"facts\" has no health check",
            ),
        ];
        for (text, expected) in cases {
            let error = parse(&text).expect_err(&text);
            assert!(
                error.contains(expected),
                "{text}\n→ {error}\nwanted {expected}"
            );
        }
    }
}
