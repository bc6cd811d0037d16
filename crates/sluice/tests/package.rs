//! The Debian packages (`scripts/package`, `crates/*/debian/`).
//!
//! `packages_install_run_and_purge` builds both packages from the debug
//! binaries `cargo test --workspace` built, installs them on this machine
//! with `dpkg -i`, checks what an operator relies on (the binaries, the
//! units as systemd reads them, the user, the configuration files, the
//! completions and man pages, a server and an agent that work as
//! installed) and purges them again, also when a check fails. It needs root
//! and changes the machine, so it is ignored by plain `cargo test`;
//! `scripts/test` runs it as its own step:
//!
//! ```sh
//! cargo test --workspace --test package -- --ignored
//! ```
//!
//! The other tests check the packaged files from the source tree.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// Runs `command` and returns its output, whatever its exit status.
fn output(command: &mut Command) -> Output {
    command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("running {command:?}: {error}"))
}

/// Runs `command`, which must succeed, and returns its stdout.
fn run(command: &mut Command) -> String {
    let out = output(command);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    output(Command::new(program).args(args)).status.success()
}

/// The shipped agent.toml with its settings uncommented: a `#` directly
/// before a key or a table header marks a setting, `# ` starts prose.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_shipped_agent_config_needs_editing_and_is_the_readme_example_uncommented() {
    let path = repo().join("crates/sluice-agent/debian/agent.toml");
    let text = read(&path);

    let refused = sluice_agent::FileConfig::parse(&path, &text)
        .expect_err("as shipped, the agent has no server to talk to");
    assert_eq!(refused.field.as_deref(), Some("server"), "{refused}");

    let config = sluice_agent::FileConfig::parse(&path, &uncommented(&text))
        .unwrap_or_else(|error| panic!("the uncommented example is invalid: {error}"));
    let servers: Vec<String> = config
        .agent
        .servers
        .as_slice()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(servers, ["https://sluice.example.net:7070"]);
    assert_eq!(
        config.token_file.as_deref(),
        Some(Path::new("/etc/sluice/agent.token")),
        "the token the unit's ConditionPathExists= waits for"
    );
    assert_eq!(config.agent.interval, Duration::from_secs(60));
    assert_eq!(
        config.agent.labels.get("role").map(String::as_str),
        Some("playlist")
    );
    let docker = config
        .commands
        .get("docker-engine")
        .expect("the example component");
    assert!(docker.apply_cmd.is_some() && docker.health_cmd.is_some());
    let own = config
        .commands
        .get(sluice_agent::AGENT_COMPONENT)
        .expect("the block that lets sluice upgrade the agent");
    assert!(
        own.apply_cmd
            .as_deref()
            .is_some_and(|apply| apply.contains("$SLUICE_ARTIFACT")),
        "{own:?}"
    );
}

#[test]
fn the_units_and_the_server_environment_name_real_flags() {
    let server_unit = read(&repo().join("crates/sluice/debian/sluice.service"));
    let environment = read(&repo().join("crates/sluice/debian/default"));
    let agent_unit = read(&repo().join("crates/sluice-agent/debian/sluice-agent.service"));

    assert!(
        environment
            .lines()
            .all(|line| line.is_empty() || line.starts_with('#')),
        "as shipped, /etc/default/sluice sets nothing"
    );
    let exec_start = |unit: &str| -> String {
        unit.lines()
            .find_map(|line| line.strip_prefix("ExecStart="))
            .expect("ExecStart=")
            .to_owned()
    };
    let server_args = environment
        .lines()
        .find_map(|line| line.strip_prefix("#SLUICE_SERVER_ARGS="))
        .expect("an example of SLUICE_SERVER_ARGS");
    let flags = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || c == '"')
            .filter(|word| word.starts_with("--"))
            .map(str::to_owned)
            .collect()
    };

    let server_flags = [flags(&exec_start(&server_unit)), flags(server_args)].concat();
    assert!(server_flags.len() >= 4, "{server_flags:?}");
    let help = run(Command::new(SLUICE).args(["server", "--help"]));
    for flag in &server_flags {
        assert!(
            help.contains(&format!("{flag} ")),
            "`sluice server` has no {flag}:\n{help}"
        );
    }
    assert!(exec_start(&server_unit).starts_with("/usr/bin/sluice server "));

    let agent = sluice_agent::cli::command();
    let agent_exec = exec_start(&agent_unit);
    assert!(agent_exec.starts_with("/usr/bin/sluice-agent "));
    for flag in flags(&agent_exec) {
        let long = flag.trim_start_matches('-');
        assert!(
            agent
                .get_arguments()
                .any(|arg| arg.get_long() == Some(long)),
            "sluice-agent has no {flag}"
        );
    }
}

#[test]
fn generate_writes_completions_and_a_man_page_per_command_but_not_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    run(Command::new(SLUICE).arg("generate").arg(dir.path()));

    let man: Vec<String> = std::fs::read_dir(dir.path().join("sluice/man"))
        .expect("sluice's man pages")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    for page in [
        "sluice.1",
        "sluice-server.1",
        "sluice-rollout-create.1",
        "sluice-plan-check.1",
    ] {
        assert!(man.contains(&page.to_owned()), "no {page} in {man:?}");
    }
    assert!(
        !man.iter()
            .any(|page| page.contains("help") || page.contains("generate")),
        "{man:?}"
    );
    let server = read(&dir.path().join("sluice/man/sluice-server.1"));
    assert!(server.contains(".TH sluice-server 1") && server.contains("data\\-dir"));
    let agent = read(&dir.path().join("sluice-agent/man/sluice-agent.1"));
    assert!(agent.contains(".TH sluice-agent 1") && agent.contains("/etc/sluice/agent.toml"));

    for (package, files) in [
        ("sluice", ["sluice.bash", "_sluice", "sluice.fish"]),
        (
            "sluice-agent",
            ["sluice-agent.bash", "_sluice-agent", "sluice-agent.fish"],
        ),
    ] {
        for file in files {
            let text = read(&dir.path().join(package).join(file));
            assert!(
                !text.contains("generate"),
                "{file} offers the hidden generate"
            );
            let expected = if package == "sluice" {
                "rollout"
            } else {
                "once"
            };
            assert!(text.contains(expected), "{file} lacks {expected}");
        }
    }
}

/// Purges both packages when dropped, so that a failed check leaves the
/// machine as it was.
struct Installed;

impl Installed {
    /// `dpkg --purge`, which must succeed.
    fn purge(self) {
        run(Command::new("dpkg").args(["--purge", "sluice", "sluice-agent"]));
        std::mem::forget(self);
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = output(Command::new("dpkg").args(["--purge", "sluice", "sluice-agent"]));
    }
}

/// A process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The paths the packages install that an operator or a tool looks for.
const INSTALLED: &[&str] = &[
    "/usr/bin/sluice",
    "/usr/bin/sluice-agent",
    "/etc/default/sluice",
    "/etc/sluice/agent.toml",
    "/usr/share/bash-completion/completions/sluice",
    "/usr/share/bash-completion/completions/sluice-agent",
    "/usr/share/zsh/vendor-completions/_sluice",
    "/usr/share/zsh/vendor-completions/_sluice-agent",
    "/usr/share/fish/vendor_completions.d/sluice.fish",
    "/usr/share/fish/vendor_completions.d/sluice-agent.fish",
    "/usr/share/man/man1/sluice.1.gz",
    "/usr/share/man/man1/sluice-server.1.gz",
    "/usr/share/man/man1/sluice-rollout-create.1.gz",
    "/usr/share/man/man1/sluice-agent.1.gz",
    "/etc/systemd/system/multi-user.target.wants/sluice.service",
    "/etc/systemd/system/multi-user.target.wants/sluice-agent.service",
];

#[test]
#[ignore = "installs the Debian packages on this machine as root: scripts/test runs it"]
fn packages_install_run_and_purge() {
    let uid = run(Command::new("id").arg("-u"));
    assert_eq!(uid.trim(), "0", "dpkg -i needs root");
    for package in ["sluice", "sluice-agent"] {
        assert!(
            !succeeds("dpkg-query", &["-W", "-f=${Status}", package])
                || run(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
                    .contains("not-installed"),
            "{package} is installed already; this test would purge it"
        );
    }
    assert!(
        !succeeds("getent", &["passwd", "sluice"]),
        "a user sluice exists already; purging the package would delete it"
    );
    let systemd_analyze = which("systemd-analyze")
        .expect("systemd-analyze checks the units: apt-get install systemd");

    // Build: the debug binaries in the target directory of this test.
    let target = Path::new(SLUICE)
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let out = tempfile::tempdir().expect("temp dir");
    let built = run(Command::new(repo().join("scripts/package"))
        .args(["--profile", "dev", "--no-build", "--fast", "--out"])
        .arg(out.path())
        .env("CARGO_TARGET_DIR", target));
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let debs: Vec<PathBuf> = ["sluice", "sluice-agent"]
        .iter()
        .map(|package| {
            out.path()
                .join(format!("{package}_{VERSION}-1_{}.deb", arch.trim()))
        })
        .collect();
    for deb in &debs {
        assert!(
            built.contains(&*deb.to_string_lossy()),
            "scripts/package did not report {}:\n{built}",
            deb.display()
        );
    }

    // Install.
    let installed = Installed;
    run(Command::new("dpkg").arg("-i").args(&debs));
    if Path::new("/run/systemd/system").exists() {
        // Booted with systemd: the postinst started the server; this test
        // runs its own.
        run(Command::new("systemctl").args(["stop", "sluice.service"]));
    }
    for path in INSTALLED {
        assert!(Path::new(path).exists(), "{path} is not installed");
    }
    assert_eq!(
        run(Command::new("/usr/bin/sluice").arg("--version")),
        format!("sluice {VERSION}\n")
    );
    assert_eq!(
        run(Command::new("/usr/bin/sluice-agent").arg("--version")),
        format!("sluice-agent {VERSION}\n")
    );
    check_units(&systemd_analyze);
    check_configuration();
    check_completions_and_man_pages();
    let sluice_uid = check_user();
    serve_and_check_in(sluice_uid);

    // Purge.
    installed.purge();
    for package in ["sluice", "sluice-agent"] {
        assert!(
            !succeeds("dpkg-query", &["-W", package]),
            "dpkg still knows {package}"
        );
    }
    let gone = ["/etc/sluice", "/var/lib/sluice", "/var/lib/sluice-agent"];
    for path in INSTALLED.iter().chain(&gone) {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} survived the purge"
        );
    }
    assert!(
        !succeeds("getent", &["passwd", "sluice"]),
        "the user sluice survived the purge"
    );
    assert!(
        !succeeds("getent", &["group", "sluice"]),
        "the group sluice survived the purge"
    );
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

/// The installed unit files, found through dpkg.
fn unit_of(package: &str) -> String {
    let files = run(Command::new("dpkg").args(["-L", package]));
    let units: Vec<&str> = files
        .lines()
        .filter(|line| line.ends_with(".service"))
        .collect();
    assert_eq!(units.len(), 1, "{package} ships {units:?}");
    units[0].to_owned()
}

fn check_units(systemd_analyze: &Path) {
    for package in ["sluice", "sluice-agent"] {
        let unit = unit_of(package);
        let verify = output(Command::new(systemd_analyze).args(["verify", &unit]));
        assert!(
            verify.status.success() && verify.stderr.is_empty(),
            "systemd-analyze verify {unit} ({}):\n{}",
            verify.status,
            String::from_utf8_lossy(&verify.stderr)
        );
    }
    // The server's sandbox as systemd scores it (0 is the best, 10 the
    // worst; the threshold is in tenths; 1.1 today), then the lines that
    // matter most, one by one (the score moves little for any one of them).
    let unit = unit_of("sluice");
    let security = output(Command::new(systemd_analyze).args([
        "security",
        "--offline=yes",
        "--threshold=13",
        &unit,
    ]));
    assert!(
        security.status.success(),
        "sluice.service is exposed more than 1.3:\n{}",
        String::from_utf8_lossy(&security.stdout)
    );
    let text = read(Path::new(&unit));
    for line in [
        "User=sluice",
        "Restart=on-failure",
        "StateDirectory=sluice",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
    ] {
        assert!(text.lines().any(|l| l == line), "{unit} lacks {line:?}");
    }
}

fn check_configuration() {
    let conffiles =
        |package: &str| run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", package]));
    assert!(conffiles("sluice").contains("/etc/default/sluice "));
    assert!(conffiles("sluice-agent").contains("/etc/sluice/agent.toml "));
    let mode = std::fs::metadata("/etc/default/sluice")
        .expect("/etc/default/sluice")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "it may hold a database password");

    // As shipped, the agent refuses to run: no server is configured.
    let refused = output(Command::new("/usr/bin/sluice-agent").args([
        "--config",
        "/etc/sluice/agent.toml",
        "--once",
    ]));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("/etc/sluice/agent.toml:") && stderr.contains("server"),
        "{stderr}"
    );
}

fn check_completions_and_man_pages() {
    // bash completes through the function the script registers.
    for (command, line, expected) in [
        ("sluice", "ro", "rollout"),
        ("sluice", "rollout cr", "create"),
        ("sluice-agent", "--on", "--once"),
    ] {
        let script = format!(
            "source /usr/share/bash-completion/completions/{command}
             function=$(complete -p {command} | sed 's/.*-F \\([^ ]*\\).*/\\1/')
             COMP_WORDS=({command} {line}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
             \"$function\" {command} \"${{COMP_WORDS[-1]}}\" \"${{COMP_WORDS[-2]}}\"
             echo \"${{COMPREPLY[*]}}\""
        );
        let offered = run(Command::new("bash").args(["-c", &script]));
        assert_eq!(
            offered.trim(),
            expected,
            "bash completion of `{command} {line}`"
        );
    }
    for (page, mentions) in [
        ("sluice-server", "data\\-dir"),
        ("sluice-agent", "/etc/sluice/agent.toml"),
    ] {
        let text = run(Command::new("gzip")
            .arg("-dc")
            .arg(format!("/usr/share/man/man1/{page}.1.gz")));
        assert!(
            text.contains(&format!(".TH {page} 1")) && text.contains(mentions),
            "{page}.1.gz:\n{text}"
        );
    }
}

/// The system user and its state directory; returns its uid.
fn check_user() -> u32 {
    let entry = run(Command::new("getent").args(["passwd", "sluice"]));
    let fields: Vec<&str> = entry.trim().split(':').collect();
    assert_eq!(fields.len(), 7, "{entry}");
    assert_eq!(fields[5], "/var/lib/sluice", "home: {entry}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "shell: {entry}");
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "a system user: {entry}");
    let state = std::fs::metadata("/var/lib/sluice").expect("/var/lib/sluice");
    assert_eq!(state.uid(), uid);
    assert_eq!(state.mode() & 0o777, 0o750);
    uid
}

/// The server as the unit runs it (the sluice user, /var/lib/sluice), an
/// agent token from the installed CLI, one `sluice-agent --once` check-in,
/// and a graceful stop on SIGTERM.
fn serve_and_check_in(sluice_uid: u32) {
    let mut child = Command::new("setpriv")
        .args([
            "--reuid=sluice",
            "--regid=sluice",
            "--init-groups",
            "--no-new-privs",
        ])
        .args(["/usr/bin/sluice", "server", "--data-dir", "/var/lib/sluice"])
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the installed sluice server");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut server = Running(child);
    let (lines, received) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("listening on ") {
                    break url.to_owned();
                }
            }
            Err(_) => panic!(
                "the installed server did not listen within 30 s:\n{}",
                errors.join().unwrap_or_default()
            ),
        }
    };
    let token = std::fs::metadata("/var/lib/sluice/admin.token").expect("admin.token");
    assert_eq!(token.uid(), sluice_uid);
    assert_eq!(token.mode() & 0o777, 0o600);

    let host = "package-test.sluice.invalid";
    let cli = |args: &[&str]| {
        run(Command::new("/usr/bin/sluice").args(args).args([
            "--server",
            &url,
            "--data-dir",
            "/var/lib/sluice",
        ]))
    };
    let agent_token = cli(&[
        "token", "create", "--reason", "e2e", "--role", "agent", "--host", host,
    ]);
    let work = tempfile::tempdir().expect("temp dir");
    let token_file = work.path().join("agent.token");
    std::fs::write(&token_file, agent_token).expect("writing the agent token");
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "server = \"{url}\"\ntoken_file = \"{}\"\nid = \"{host}\"\nlabels = {{ role = \"package-test\" }}\n",
            token_file.display()
        ),
    )
    .expect("writing the agent config");
    run(Command::new("/usr/bin/sluice-agent")
        .arg("--config")
        .arg(&config)
        .arg("--once"));
    assert!(
        Path::new("/var/lib/sluice-agent/state.json").is_file(),
        "the agent keeps its state where the unit's StateDirectory= is"
    );
    let hosts = cli(&["hosts", "list", "--output", "json"]);
    assert!(hosts.contains(host), "the check-in did not land:\n{hosts}");

    run(Command::new("kill").args(["-TERM", &server.0.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.0.try_wait().expect("waiting for the server") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server ignored SIGTERM for 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the server stopped with {status}");
}
