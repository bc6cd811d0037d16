//! The agent upgrading itself. The component named [`AGENT_COMPONENT`]
//! (`sluice-agent`) is the agent's own package, and its apply restarts the
//! agent halfway: the package's postinst runs `systemctl restart
//! sluice-agent`. So that apply must outlive the agent that started it,
//! and the next agent must take it over rather than call it interrupted.
//!
//! - [`OwnApply::run`] starts `apply_cmd` outside the agent's reach: when
//!   the agent runs as a systemd unit, in a scope of its own
//!   (`systemd-run --scope`), so that stopping the unit (`KillMode=mixed`
//!   kills what is left in its cgroup) does not kill it; its output goes to
//!   a file (`self-apply.log`), not to a pipe whose reader dies with the
//!   agent; the agent kills it only when it outlives the component's
//!   timeout, never when the agent stops.
//! - The process is durably recorded before the command starts
//!   (`self-apply.json`: its pid, its start time from `/proc/PID/stat` and
//!   the boot id, so that this very process can be told from a pid used
//!   again): the shell waits on its stdin for the agent's go, which comes
//!   once the record is written; if the agent dies before, the shell reads
//!   the end of its stdin and exits without running the command. The
//!   shell writes `running` to `self-apply.status` as it starts the
//!   command, and the command's exit status when it ends.
//! - The next start of the agent finds the record ([`OwnApply::adopt`]),
//!   waits while that process runs, and takes its exit status as the
//!   apply's outcome; the agent then reads the version and checks health
//!   as after any apply: the restart is no failure, and nothing is applied
//!   twice.
//! - [`Binary`] tells when the binary the agent runs was replaced on disk:
//!   an upgrade that ends while the agent still runs (a `policy-rc.d`
//!   forbade the postinst's restart) makes the agent run its new binary
//!   itself (`sluice-agent` execs it with the same arguments).
//!
//! The files live beside the state file; the log stays until the next
//! upgrade, the record and the status go once the outcome is known.

use std::future::Future;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use crate::ops::{tail_text, Failure, Run, TAIL_BYTES};
use crate::state::write_atomically;

/// The name of the agent's own component in `agent.toml`.
pub const AGENT_COMPONENT: &str = "sluice-agent";
/// The record of the apply in flight, beside the state file.
const RECORD: &str = "self-apply.json";
/// Its output (stdout and stderr).
const LOG: &str = "self-apply.log";
/// `running`, then the command's exit status.
const STATUS: &str = "self-apply.status";
/// How often an adopted apply is looked at until it ends.
const POLL: Duration = Duration::from_millis(200);

/// How the agent's own component is applied, and where its files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnApply {
    dir: PathBuf,
    scope: bool,
}

/// The apply in flight, as recorded before its command starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    component: String,
    version: String,
    /// The shell running `apply_cmd` (the leader of its process group).
    pid: i32,
    /// Its start time, in clock ticks after boot (`/proc/PID/stat`).
    start_time: u64,
    /// `/proc/sys/kernel/random/boot_id` when it started.
    boot_id: String,
    /// When it started, in seconds since the Unix epoch (for its timeout).
    started_at: u64,
}

/// What the shell wrote to the status file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Nothing: the command never started.
    Absent,
    /// The command started and did not finish (or the file is unreadable).
    Running,
    Exited(i32),
}

impl OwnApply {
    /// Keeps its files in `dir` (the state file's directory); `scope`: run
    /// the command in a systemd scope of its own ([`OwnApply::under_systemd`]).
    pub fn new(dir: PathBuf, scope: bool) -> OwnApply {
        OwnApply { dir, scope }
    }

    /// Whether this process runs as a systemd unit (systemd is the init and
    /// set `INVOCATION_ID`): its own apply must then leave the unit's
    /// cgroup, or stopping the unit kills it.
    pub fn under_systemd() -> bool {
        std::env::var_os("INVOCATION_ID").is_some() && Path::new("/run/systemd/system").is_dir()
    }

    /// Runs `command` (`apply_cmd` of `component` at `version`) with `env`,
    /// recorded, outside the agent's reach, for at most `timeout` (then its
    /// process group is killed). Dropping the future leaves it running: the
    /// next agent adopts it.
    pub(crate) async fn run(
        &self,
        command: &str,
        env: &[(&'static str, String)],
        component: &str,
        version: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let not_run = |what: String| format!("{what}; apply_cmd was not run");
        std::fs::create_dir_all(&self.dir)
            .map_err(|error| not_run(format!("cannot create {}: {error}", self.dir.display())))?;
        remove(&self.dir.join(STATUS));
        let log_path = self.dir.join(LOG);
        let log = std::fs::File::create(&log_path)
            .map_err(|error| not_run(format!("cannot write {}: {error}", log_path.display())))?;
        let log_too = log
            .try_clone()
            .map_err(|error| not_run(format!("cannot write {}: {error}", log_path.display())))?;
        let boot_id = boot_id().map_err(not_run)?;
        let mut shell = if self.scope {
            let mut scope = tokio::process::Command::new("systemd-run");
            scope
                .args(["--scope", "--quiet", "--collect"])
                .arg(format!(
                    "--description=sluice-agent: apply {component} {version}"
                ))
                .args(["--", "/bin/sh"]);
            scope
        } else {
            tokio::process::Command::new("/bin/sh")
        };
        let mut child = shell
            .arg("-c")
            .arg(wrapper(command))
            .arg("sluice-agent-apply")
            .arg(self.dir.join(STATUS))
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_too)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|error| {
                let program = if self.scope { "systemd-run" } else { "/bin/sh" };
                not_run(format!("cannot run {program}: {error}"))
            })?;
        let mut go = child.stdin.take();
        let pid = child.id().and_then(|id| i32::try_from(id).ok());
        let record = pid
            .and_then(|pid| {
                Some(Record {
                    component: component.to_owned(),
                    version: version.to_owned(),
                    pid,
                    start_time: start_time(pid)?,
                    boot_id,
                    started_at: now(),
                })
            })
            .ok_or_else(|| "the apply's shell is gone before it started".to_owned())
            .and_then(|record| {
                let json = serde_json::to_vec_pretty(&record).map_err(|error| error.to_string())?;
                write_atomically(&self.dir.join(RECORD), &json).map_err(|error| error.to_string())
            });
        if let Err(error) = record {
            // The shell reads the end of its stdin and exits, running nothing.
            drop(go);
            let _ = child.wait().await;
            return Err(with_output(
                not_run(format!("cannot record the apply: {error}")),
                &self.log_tail(),
            ));
        }
        if let Some(stdin) = go.as_mut() {
            // A shell that is gone already reports its status below.
            let _ = stdin.write_all(b"go\n").await;
        }
        drop(go);
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            Ok(Err(error)) => return Err(format!("waiting for apply_cmd: {error}")),
            Err(_) => {
                kill_group(pid);
                let _ = child.wait().await;
                None
            }
        };
        let started = self.status() != Status::Absent;
        self.forget();
        let run = Run {
            status,
            timeout,
            output: self.log_tail(),
        };
        match status {
            // systemd-run could not make the scope, or the shell failed.
            Some(status) if !started => {
                let program = if self.scope { "systemd-run" } else { "/bin/sh" };
                Err(with_output(
                    format!("{program} ended ({status}) before apply_cmd started"),
                    &run.output,
                ))
            }
            _ => run.result("apply_cmd"),
        }
    }

    /// The apply of `component` at `version` that an earlier agent process
    /// recorded, if there is one to take over: a future that waits while
    /// it runs (killing its process group once it has outlived `timeout`)
    /// and gives its outcome. `None` when there is no record of it, or when
    /// its command never started (the agent stopped first) or was cut short
    /// by a reboot: the apply was interrupted with the agent.
    pub(crate) fn adopt(
        &self,
        component: &str,
        version: &str,
        timeout: Duration,
    ) -> Option<impl Future<Output = Result<(), Failure>> + Send + 'static> {
        let text = std::fs::read(self.dir.join(RECORD)).ok()?;
        let record: Record = serde_json::from_slice(&text).ok()?;
        if record.component != component || record.version != version {
            return None;
        }
        let status = self.status();
        let same_boot = boot_id().is_ok_and(|boot| boot == record.boot_id);
        let interrupted = match status {
            Status::Absent => !record.alive(),
            Status::Running => !same_boot,
            Status::Exited(_) => false,
        };
        if interrupted {
            self.forget();
            return None;
        }
        let this = self.clone();
        Some(async move { this.wait(record, timeout).await })
    }

    /// Waits until the recorded process ends, and gives its outcome.
    async fn wait(self, record: Record, timeout: Duration) -> Result<(), Failure> {
        let deadline = UNIX_EPOCH + Duration::from_secs(record.started_at) + timeout;
        let mut killed = false;
        while record.alive() {
            if !killed && SystemTime::now() >= deadline {
                kill_group(Some(record.pid));
                killed = true;
            }
            tokio::time::sleep(POLL).await;
        }
        let status = self.status();
        self.forget();
        let output = self.log_tail();
        let status = match (killed, status) {
            (true, _) => None,
            (false, Status::Exited(code)) => Some(ExitStatus::from_raw((code & 0xff) << 8)),
            (false, Status::Absent | Status::Running) => {
                return Err(with_output(
                    "apply_cmd was killed before it finished, while no agent watched it".to_owned(),
                    &output,
                ));
            }
        };
        Run {
            status,
            timeout,
            output,
        }
        .result("apply_cmd")
    }

    /// What the shell wrote to the status file: nothing when there is no
    /// file it could have written (none, or a directory in the way).
    fn status(&self) -> Status {
        use std::io::ErrorKind::{IsADirectory, NotFound};
        match std::fs::read_to_string(self.dir.join(STATUS)) {
            Err(error) if matches!(error.kind(), NotFound | IsADirectory) => Status::Absent,
            Err(_) => Status::Running,
            Ok(text) => text.trim().parse().map_or(Status::Running, Status::Exited),
        }
    }

    /// The last lines of the apply's output.
    fn log_tail(&self) -> String {
        let bytes = std::fs::read(self.dir.join(LOG)).unwrap_or_default();
        tail_text(&bytes[bytes.len().saturating_sub(TAIL_BYTES)..])
    }

    /// Removes the record and the status: the outcome is known.
    fn forget(&self) {
        remove(&self.dir.join(RECORD));
        remove(&self.dir.join(STATUS));
    }
}

impl Record {
    /// Whether the recorded process still runs: the same boot, and a
    /// process with that pid and that start time that is not a zombie.
    fn alive(&self) -> bool {
        boot_id().is_ok_and(|boot| boot == self.boot_id)
            && start_time(self.pid) == Some(self.start_time)
    }
}

/// The script `sh -c` runs: wait for the agent's go, then run `command`
/// in a subshell, writing `running` and then its exit status to the file
/// named by `$1`.
fn wrapper(command: &str) -> String {
    format!(
        "sluice_status=$1\nset --\n\
         IFS= read -r sluice_go && test \"$sluice_go\" = go || exit 0\n\
         exec </dev/null\n\
         echo running > \"$sluice_status\" || exit 1\n\
         (\n{command}\n)\n\
         sluice_exit=$?\n\
         echo \"$sluice_exit\" > \"$sluice_status\"\n\
         exit \"$sluice_exit\"\n"
    )
}

/// This boot's id.
fn boot_id() -> Result<String, Failure> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|text| text.trim().to_owned())
        .map_err(|error| format!("cannot read /proc/sys/kernel/random/boot_id: {error}"))
}

/// The start time of process `pid` (field 22 of `/proc/PID/stat`, clock
/// ticks after boot); `None` when there is no such process, or it has
/// ended and waits to be reaped.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    // fields[0] is field 3, the state.
    if matches!(fields.first().copied(), Some("Z" | "X")) {
        return None;
    }
    fields.get(19)?.parse().ok()
}

fn kill_group(pid: Option<i32>) {
    if let Some(pgid) = pid.and_then(rustix::process::Pid::from_raw) {
        // The group may be gone already; nothing else to do then.
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
    }
}

/// `failure`, then the output's last lines, if any.
fn with_output(mut failure: Failure, output: &str) -> Failure {
    if !output.is_empty() {
        failure.push('\n');
        failure.push_str(output);
    }
    failure
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn remove(path: &Path) {
    // Missing already is fine; a file that cannot be removed is overwritten
    // by the next apply.
    let _ = std::fs::remove_file(path);
}

/// The binary this process runs, to tell when a package upgrade replaced
/// it on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Binary {
    /// The running binary: its path, and the file it was started from.
    pub fn current() -> std::io::Result<Binary> {
        let path = std::env::current_exe()?;
        let running = std::fs::metadata("/proc/self/exe")?;
        Ok(Binary {
            path,
            dev: running.dev(),
            ino: running.ino(),
        })
    }

    /// Where the binary is installed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether another file than the one running now is at the binary's
    /// path (a package upgrade installed a new binary there).
    pub fn replaced(&self) -> bool {
        std::fs::metadata(&self.path)
            .is_ok_and(|installed| (installed.dev(), installed.ino()) != (self.dev, self.ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(dir: &Path) -> OwnApply {
        OwnApply::new(dir.to_owned(), false)
    }

    #[test]
    fn a_process_is_told_from_another_with_its_pid() {
        let me = i32::try_from(std::process::id()).expect("a pid");
        let record = Record {
            component: AGENT_COMPONENT.into(),
            version: "2".into(),
            pid: me,
            start_time: start_time(me).expect("this process runs"),
            boot_id: boot_id().expect("the boot id"),
            started_at: now(),
        };
        assert!(record.alive());
        let reused = Record {
            start_time: record.start_time + 1,
            ..record.clone()
        };
        assert!(!reused.alive(), "another process with the same pid");
        let rebooted = Record {
            boot_id: "another boot".into(),
            ..record
        };
        assert!(!rebooted.alive());
    }

    #[tokio::test]
    async fn an_apply_is_recorded_and_forgotten_once_it_ends() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own(dir.path());
        let seen = dir.path().join("seen");
        // The command sees the record of its own process.
        let command = format!(
            "cp {record} {seen}; echo \"installing $SLUICE_VERSION\"",
            record = dir.path().join(RECORD).display(),
            seen = seen.display()
        );
        let env = [("SLUICE_VERSION", "2".to_owned())];
        own.run(
            &command,
            &env,
            AGENT_COMPONENT,
            "2",
            Duration::from_secs(30),
        )
        .await
        .expect("applied");
        let record: Record =
            serde_json::from_slice(&std::fs::read(&seen).expect("the record")).expect("JSON");
        assert_eq!(
            (record.component.as_str(), record.version.as_str()),
            (AGENT_COMPONENT, "2")
        );
        assert!(!dir.path().join(RECORD).exists());
        assert!(!dir.path().join(STATUS).exists());
        assert_eq!(own.log_tail(), "installing 2");
        let failure = own
            .run(
                "echo broken; exit 3",
                &[],
                AGENT_COMPONENT,
                "3",
                Duration::from_secs(30),
            )
            .await
            .expect_err("failed");
        assert_eq!(failure, "apply_cmd exited with status 3\nbroken");
        // A shell that cannot say the command started does not start it,
        // and says so.
        std::fs::create_dir(dir.path().join(STATUS)).expect("a dir in the way");
        let failure = own
            .run(
                &command,
                &env,
                AGENT_COMPONENT,
                "3",
                Duration::from_secs(30),
            )
            .await
            .expect_err("failed");
        assert!(
            failure.starts_with("/bin/sh ended (exit status: 1) before apply_cmd started\n"),
            "{failure}"
        );
        assert!(!failure.contains("installing"), "{failure}");
    }

    #[tokio::test]
    async fn an_apply_left_running_is_adopted_and_waited_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own(dir.path());
        let release = dir.path().join("release");
        let command = format!(
            "echo started; while test ! -e {release}; do sleep 0.05; done; echo done; exit 4",
            release = release.display()
        );
        // The agent stops waiting (it stops); the apply goes on.
        let run = own.run(&command, &[], AGENT_COMPONENT, "2", Duration::from_secs(30));
        let stopped = tokio::time::timeout(Duration::from_millis(500), run).await;
        assert!(stopped.is_err(), "the apply still runs");
        assert!(own
            .adopt(AGENT_COMPONENT, "1", Duration::from_secs(30))
            .is_none());
        let adopted = own
            .adopt(AGENT_COMPONENT, "2", Duration::from_secs(30))
            .expect("the apply to take over");
        std::fs::write(&release, "").expect("release");
        let failure = adopted.await.expect_err("it exited 4");
        assert_eq!(failure, "apply_cmd exited with status 4\nstarted\ndone");
        assert!(own
            .adopt(AGENT_COMPONENT, "2", Duration::from_secs(30))
            .is_none());
    }

    #[tokio::test]
    async fn an_adopted_apply_that_outlives_its_timeout_is_killed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own(dir.path());
        let run = own.run(
            "sleep 60",
            &[],
            AGENT_COMPONENT,
            "2",
            Duration::from_secs(60),
        );
        let stopped = tokio::time::timeout(Duration::from_millis(300), run).await;
        assert!(stopped.is_err(), "the apply still runs");
        let failure = own
            .adopt(AGENT_COMPONENT, "2", Duration::from_secs(1))
            .expect("the apply to take over")
            .await
            .expect_err("timed out");
        assert!(
            failure.starts_with("apply_cmd timed out after 1s"),
            "{failure}"
        );
    }

    #[test]
    fn an_apply_that_never_started_is_not_adopted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let own = own(dir.path());
        // Recorded, but the process is gone and the command never started.
        let record = Record {
            component: AGENT_COMPONENT.into(),
            version: "2".into(),
            pid: i32::MAX,
            start_time: 1,
            boot_id: boot_id().expect("the boot id"),
            started_at: now(),
        };
        let json = serde_json::to_vec(&record).expect("JSON");
        write_atomically(&dir.path().join(RECORD), &json).expect("written");
        assert!(own
            .adopt(AGENT_COMPONENT, "2", Duration::from_secs(30))
            .is_none());
        assert!(!dir.path().join(RECORD).exists(), "the record is dropped");
        // Cut short by a reboot: interrupted, too.
        let rebooted = Record {
            boot_id: "another boot".into(),
            ..record
        };
        let json = serde_json::to_vec(&rebooted).expect("JSON");
        write_atomically(&dir.path().join(RECORD), &json).expect("written");
        std::fs::write(dir.path().join(STATUS), "running\n").expect("status");
        assert!(own
            .adopt(AGENT_COMPONENT, "2", Duration::from_secs(30))
            .is_none());
    }

    #[test]
    fn a_replaced_binary_is_seen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sluice-agent");
        std::fs::write(&path, "old").expect("old");
        let meta = std::fs::metadata(&path).expect("metadata");
        let binary = Binary {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        assert!(!binary.replaced());
        // As dpkg installs a file: beside it, then renamed over it.
        let new = dir.path().join("sluice-agent.dpkg-new");
        std::fs::write(&new, "new").expect("new");
        std::fs::rename(&new, &path).expect("renamed");
        assert!(binary.replaced());
    }
}
