//! What the agent does to its host, behind [`HostOps`]: read the installed
//! version, apply a desired version (with the artifact its payload names,
//! downloaded and verified), run the health check, and take over an apply
//! that outlived an earlier agent process (the agent's own upgrade).
//! [`ShellOps`] runs the configured shell commands; `sluice demo` plugs in
//! a simulated host.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use sluice_api::agent::Desired;
use tokio::io::AsyncReadExt as _;

use crate::config::{Commands, ComponentConfig};
use crate::upgrade::{OwnApply, AGENT_COMPONENT};

/// At most this many lines of a command's output travel in a report.
pub const TAIL_LINES: usize = 20;
/// At most this many bytes of a command's output travel in a report.
pub const TAIL_BYTES: usize = 4096;
/// How long to keep reading output once the shell has exited (a background
/// process it started may hold the pipe open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// A failed operation: what went wrong, with the last lines of output.
pub type Failure = String;

/// The three things an agent does to its host (plus its dynamic labels).
///
/// Every call names the component (with its timeout) and, where known, the
/// version the server wants: `SLUICE_COMPONENT`, `SLUICE_VERSION` and
/// `SLUICE_PAYLOAD` for the shell commands.
pub trait HostOps: Send + Sync + 'static {
    /// The version of `component` installed now. `Err` when it cannot be
    /// read (the component is then left out of the report).
    fn installed(
        &self,
        component: &ComponentConfig,
        desired: Option<&Desired>,
    ) -> impl Future<Output = Result<String, Failure>> + Send;

    /// Installs `desired`; `Err` with the last lines of output when it fails.
    /// `artifact`: the verified file the payload names (`url` and
    /// `sha256`), if it names one (`SLUICE_ARTIFACT` for `apply_cmd`).
    /// The agent re-reads the installed version afterwards and trusts that
    /// rather than the outcome alone.
    fn apply(
        &self,
        component: &ComponentConfig,
        desired: &Desired,
        artifact: Option<&Path>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Whether `component` is healthy at `desired`: after an apply, and
    /// again at every check-in (or every `health_interval`) while the host
    /// runs `desired`; never beside another operation.
    fn health(
        &self,
        component: &ComponentConfig,
        desired: &Desired,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// An apply of `component` at `version` that an earlier agent process
    /// started and that outlived it (the agent's own upgrade, which
    /// restarts the agent halfway): a future that waits until it ends and
    /// gives its outcome, as [`HostOps::apply`] would. `None` (the default)
    /// when there is none: the apply was interrupted with that agent.
    fn adopt(
        &self,
        component: &ComponentConfig,
        version: &str,
    ) -> Option<impl Future<Output = Result<(), Failure>> + Send + 'static> {
        let _ = (component, version);
        None::<std::future::Ready<Result<(), Failure>>>
    }

    /// Labels to add to (and override) the configured ones at each check-in.
    /// `Err` skips the check-in (the agent backs off and retries).
    fn labels(&self) -> impl Future<Output = Result<BTreeMap<String, String>, Failure>> + Send {
        async { Ok(BTreeMap::new()) }
    }
}

/// The real host: each operation is the component's shell command (`sh -c`),
/// run in its own process group with stdout and stderr merged, killed as a
/// group when it outlives the component's `timeout` (or the agent stops
/// waiting for it). With [`ShellOps::with_own_apply`], the apply of the
/// agent's own component (`sluice-agent`) outlives the agent instead (see
/// [`OwnApply`]).
#[derive(Debug, Clone, Default)]
pub struct ShellOps {
    commands: BTreeMap<String, Commands>,
    labels_cmd: Option<String>,
    own: Option<OwnApply>,
}

impl ShellOps {
    /// The commands of each component, by name, and the optional
    /// `labels_cmd` printing a JSON object.
    pub fn new(commands: BTreeMap<String, Commands>, labels_cmd: Option<String>) -> ShellOps {
        ShellOps {
            commands,
            labels_cmd,
            own: None,
        }
    }

    /// Applies the component named `sluice-agent`, the agent's own
    /// package, as `own` says: recorded, outside the agent's reach, and
    /// taken over by the next agent when it outlives this one.
    pub fn with_own_apply(mut self, own: OwnApply) -> ShellOps {
        self.own = Some(own);
        self
    }

    /// How `component` is applied when it is the agent's own.
    fn own(&self, component: &ComponentConfig) -> Option<&OwnApply> {
        self.own
            .as_ref()
            .filter(|_| component.name == AGENT_COMPONENT)
    }

    fn commands(&self, component: &ComponentConfig) -> Result<&Commands, Failure> {
        self.commands
            .get(&component.name)
            .ok_or_else(|| format!("no commands are configured for {:?}", component.name))
    }
}

impl HostOps for ShellOps {
    async fn installed(
        &self,
        component: &ComponentConfig,
        desired: Option<&Desired>,
    ) -> Result<String, Failure> {
        let command = &self.commands(component)?.version_cmd;
        let run = run_shell(
            command,
            &environment(&component.name, desired),
            component.timeout,
        )
        .await?;
        if !run.succeeded() {
            return Err(run.failure("version_cmd"));
        }
        let version = run.output.trim();
        if version.is_empty() || version.contains('\n') {
            return Err(format!(
                "version_cmd printed {:?}; it must print the version alone on one line",
                truncate(version, 200)
            ));
        }
        Ok(version.to_owned())
    }

    async fn apply(
        &self,
        component: &ComponentConfig,
        desired: &Desired,
        artifact: Option<&Path>,
    ) -> Result<(), Failure> {
        let Some(command) = &self.commands(component)?.apply_cmd else {
            return Err(format!("{:?} has no apply_cmd", component.name));
        };
        let mut env = environment(&component.name, Some(desired));
        if let Some(path) = artifact {
            env.push(("SLUICE_ARTIFACT", path.display().to_string()));
        }
        match self.own(component) {
            Some(own) => {
                own.run(
                    command,
                    &env,
                    &component.name,
                    &desired.version,
                    component.timeout,
                )
                .await
            }
            None => run_step(command, "apply_cmd", component, &env).await,
        }
    }

    fn adopt(
        &self,
        component: &ComponentConfig,
        version: &str,
    ) -> Option<impl Future<Output = Result<(), Failure>> + Send + 'static> {
        self.own(component)?
            .adopt(&component.name, version, component.timeout)
    }

    async fn health(&self, component: &ComponentConfig, desired: &Desired) -> Result<(), Failure> {
        let Some(command) = &self.commands(component)?.health_cmd else {
            return Ok(());
        };
        let env = environment(&component.name, Some(desired));
        run_step(command, "health_cmd", component, &env).await
    }

    async fn labels(&self) -> Result<BTreeMap<String, String>, Failure> {
        let Some(command) = &self.labels_cmd else {
            return Ok(BTreeMap::new());
        };
        let run = run_shell(command, &[], Duration::from_secs(60)).await?;
        if !run.succeeded() {
            return Err(run.failure("labels_cmd"));
        }
        let value: serde_json::Value = serde_json::from_str(&run.output).map_err(|error| {
            format!(
                "labels_cmd did not print a JSON object ({error}): {}",
                truncate(&run.output, 200)
            )
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(format!(
                "labels_cmd printed {}, not a JSON object of labels such as {{\"role\": \"db\"}}",
                truncate(&run.output, 200)
            ));
        };
        map.into_iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => Ok((key, text)),
                other => Err(format!(
                    "labels_cmd: label {key:?} is {other}; label values must be strings"
                )),
            })
            .collect()
    }
}

/// `SLUICE_COMPONENT`, and `SLUICE_VERSION` and `SLUICE_PAYLOAD` (JSON,
/// `null` when there is none) when the desired version is known.
pub fn environment(component: &str, desired: Option<&Desired>) -> Vec<(&'static str, String)> {
    let mut env = vec![("SLUICE_COMPONENT", component.to_owned())];
    if let Some(desired) = desired {
        env.push(("SLUICE_VERSION", desired.version.clone()));
        let payload = desired
            .payload
            .as_ref()
            .map_or_else(|| "null".to_owned(), serde_json::Value::to_string);
        env.push(("SLUICE_PAYLOAD", payload));
    }
    env
}

/// A finished shell command.
#[derive(Debug)]
pub struct Run {
    /// `None` when it was killed for outliving its timeout.
    pub status: Option<ExitStatus>,
    pub timeout: Duration,
    /// The tail of its merged stdout and stderr ([`TAIL_LINES`], [`TAIL_BYTES`]).
    pub output: String,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// `Ok` when it exited 0, else its [`Run::failure`].
    pub(crate) fn result(&self, what: &str) -> Result<(), Failure> {
        if self.succeeded() {
            Ok(())
        } else {
            Err(self.failure(what))
        }
    }

    /// "apply_cmd exited with status 3", then the last lines of output.
    pub(crate) fn failure(&self, what: &str) -> Failure {
        let mut message = match self.status {
            None => format!(
                "{what} timed out after {}s and its process group was killed",
                self.timeout.as_secs_f64()
            ),
            Some(status) => match status.code() {
                Some(code) => format!("{what} exited with status {code}"),
                None => format!("{what} was killed by a signal ({status})"),
            },
        };
        let output = self.output.trim_end();
        if !output.is_empty() {
            message.push('\n');
            message.push_str(output);
        }
        message
    }
}

/// Kills a process group when dropped, unless disarmed: the command timed
/// out, or the agent stopped waiting for it (shutdown).
struct GroupGuard(Option<rustix::process::Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            // The group may be gone already; nothing else to do then.
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
    }
}

/// Runs `apply_cmd` or `health_cmd` (`what`) with `env`: `Ok` when it
/// exits 0, else the last lines of its output.
async fn run_step(
    command: &str,
    what: &str,
    component: &ComponentConfig,
    env: &[(&'static str, String)],
) -> Result<(), Failure> {
    run_shell(command, env, component.timeout)
        .await?
        .result(what)
}

/// Runs `sh -c COMMAND` in a new process group with `env`, stdout and
/// stderr merged into one pipe, for at most `timeout`; on timeout the whole
/// group is killed. `Err` only when the shell could not be started.
pub async fn run_shell(
    command: &str,
    env: &[(&'static str, String)],
    timeout: Duration,
) -> Result<Run, Failure> {
    // `exec 2>&1` merges stderr into stdout for the whole script, keeping the
    // order in which lines were written.
    let script = format!("exec 2>&1\n{command}");
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot run /bin/sh: {error}"))?;
    let mut guard = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw),
    );
    let mut stdout = child.stdout.take();
    let mut tail = Tail::default();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    let mut status = None;
    let mut reading = stdout.is_some();
    let mut drain_until = None;
    loop {
        let read = async {
            match stdout.as_mut() {
                Some(stdout) if reading => stdout.read(&mut buffer).await,
                _ => std::future::pending().await,
            }
        };
        let until = drain_until.unwrap_or(deadline).min(deadline);
        tokio::select! {
            result = read => match result {
                Ok(0) | Err(_) => {
                    reading = false;
                    if status.is_some() { break; }
                }
                Ok(count) => tail.push(&buffer[..count]),
            },
            exited = child.wait(), if status.is_none() => {
                match exited {
                    Ok(exit) => status = Some(exit),
                    Err(error) => return Err(format!("waiting for /bin/sh: {error}")),
                }
                if !reading { break; }
                drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
            },
            () = tokio::time::sleep_until(until) => {
                if status.is_some() {
                    // Exited; a leftover background process holds the pipe.
                    break;
                }
                // Timed out: the guard kills the whole group.
                drop(guard);
                let _ = child.wait().await;
                return Ok(Run { status: None, timeout, output: tail.text() });
            },
        }
    }
    // Exited by itself: leave whatever it started in the background alone.
    guard.0 = None;
    Ok(Run {
        status,
        timeout,
        output: tail.text(),
    })
}

/// The last [`TAIL_BYTES`] of a stream, cut to its last [`TAIL_LINES`] lines.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > TAIL_BYTES {
            let excess = self.bytes.len() - TAIL_BYTES;
            self.bytes.drain(..excess);
        }
    }

    fn text(&self) -> String {
        tail_text(&self.bytes)
    }
}

/// The last [`TAIL_LINES`] lines of `bytes` (the end of some output).
pub(crate) fn tail_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..].join("\n")
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_merged_and_cut_to_its_tail() {
        let run = run_shell(
            "for i in $(seq 1 30); do echo out $i; echo err $i >&2; done; exit 3",
            &[],
            Duration::from_secs(30),
        )
        .await
        .expect("sh runs");
        assert_eq!(run.status.and_then(|s| s.code()), Some(3));
        let lines: Vec<&str> = run.output.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last(), Some(&"err 30"));
        assert_eq!(lines[lines.len() - 2], "out 30");
        let failure = run.failure("apply_cmd");
        assert!(
            failure.starts_with("apply_cmd exited with status 3\n"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let marker = dir.path().join("survived");
        // The grandchild would write the marker after 2 s if it survived.
        let command = format!(
            "(sleep 2; touch {marker}) & echo started; sleep 30",
            marker = marker.display()
        );
        let run = run_shell(&command, &[], Duration::from_millis(300))
            .await
            .expect("sh runs");
        assert!(run.status.is_none(), "the command timed out");
        assert_eq!(run.output, "started");
        assert!(run.failure("apply_cmd").contains("timed out after 0.3s"));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "the background grandchild was killed too");
    }

    #[tokio::test]
    async fn commands_see_the_desired_version_and_payload() {
        let desired = Desired {
            version: "17.03.1".into(),
            rollout: Some("r-1".into()),
            payload: Some(serde_json::json!({"sha256": "abc"})),
        };
        let run = run_shell(
            "echo \"$SLUICE_COMPONENT $SLUICE_VERSION $SLUICE_PAYLOAD\"",
            &environment("docker-engine", Some(&desired)),
            Duration::from_secs(30),
        )
        .await
        .expect("sh runs");
        assert_eq!(run.output, "docker-engine 17.03.1 {\"sha256\":\"abc\"}");
        let none = Desired {
            payload: None,
            ..desired
        };
        assert_eq!(environment("c", Some(&none))[2].1, "null");
    }

    #[tokio::test]
    async fn apply_cmd_sees_the_artifact() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        let commands = Commands {
            version_cmd: "echo 1".into(),
            apply_cmd: Some(format!(
                "echo \"$SLUICE_VERSION ${{SLUICE_ARTIFACT-none}}\" >> {}",
                out.display()
            )),
            health_cmd: None,
        };
        let ops = ShellOps::new(BTreeMap::from([("c".to_owned(), commands)]), None);
        let component = ComponentConfig {
            name: "c".into(),
            mode: crate::config::Mode::Apply,
            timeout: Duration::from_secs(30),
            health_interval: None,
            enforce: false,
        };
        let desired = Desired {
            version: "2".into(),
            rollout: None,
            payload: None,
        };
        let artifact = dir.path().join("abc-c_2.deb");
        ops.apply(&component, &desired, Some(&artifact))
            .await
            .expect("applied");
        ops.apply(&component, &desired, None)
            .await
            .expect("applied");
        assert_eq!(
            std::fs::read_to_string(&out).expect("output"),
            format!("2 {}\n2 none\n", artifact.display())
        );
    }

    #[tokio::test]
    async fn a_background_process_holding_the_pipe_does_not_hold_the_agent() {
        let run = run_shell("sleep 3 & echo done", &[], Duration::from_secs(15))
            .await
            .expect("sh runs");
        assert!(run.succeeded(), "{run:?}");
        assert_eq!(run.output, "done");
    }

    #[tokio::test]
    async fn labels_cmd_must_print_an_object_of_strings() {
        let ops = |cmd: &str| ShellOps::new(BTreeMap::new(), Some(cmd.to_owned()));
        let labels = ops("echo '{\"role\": \"db\", \"site\": \"sto\"}'")
            .labels()
            .await
            .expect("an object of strings");
        assert_eq!(labels["role"], "db");
        let error = ops("echo '[1]'").labels().await.expect_err("not an object");
        assert!(error.contains("not a JSON object"), "{error}");
        let error = ops("echo '{\"n\": 1}'")
            .labels()
            .await
            .expect_err("not strings");
        assert!(error.contains("label \"n\" is 1"), "{error}");
        let error = ops("exit 4").labels().await.expect_err("failed");
        assert!(error.contains("labels_cmd exited with status 4"), "{error}");
    }
}
