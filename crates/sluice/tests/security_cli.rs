//! The command line's security defaults, with the real binary: `sluice
//! server` serves plain HTTP on loopback only unless told
//! `--insecure-http`, keeps secrets out of `--advertise-url`, and `sluice
//! dashboard [--open]` signs a browser in with a one-time link instead of
//! a pasted token; `--help` warns that `--token` shows in the process list.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice_testkit::browse::{set_cookie, visit};
use sluice_testkit::tls::private_ca;
use sluice_testkit::{Run, Sandbox};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// `sluice server ARGS` on a fresh data dir, run to its end.
fn server_refuses(args: &[&str]) -> Run {
    let data_dir = tempfile::tempdir().expect("data dir");
    Run::of(
        Command::new(BIN)
            .arg("server")
            .args(args)
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("RUST_LOG", "error")
            .env_remove("SLUICE_DATABASE_URL")
            .stdin(Stdio::null()),
    )
}

/// A server killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sluice server ARGS` on `data_dir`; returns it and the URL it
/// announces.
fn server_starts(args: &[&str], data_dir: &Path) -> (Running, String) {
    let mut child = Command::new(BIN)
        .arg("server")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning sluice server");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|error| panic!("sluice server {args:?} announced nothing: {error}"));
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("not an announcement: {line}"))
        .to_owned();
    (running, url)
}

#[test]
fn plain_http_is_served_off_loopback_only_when_asked_for() {
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:7070"] {
        let refused = server_refuses(&["--listen", listen]).exits(2);
        let error = refused.stderr();
        for hint in [
            "not a loopback address",
            "--tls-cert",
            "--tls-key",
            "--insecure-http",
        ] {
            assert!(error.contains(hint), "{listen}: no {hint:?} in: {error}");
        }
    }
    // Told so, or with a certificate, it serves on every interface.
    let data_dir = tempfile::tempdir().expect("data dir");
    let (_plain, url) = server_starts(
        &["--listen", "0.0.0.0:0", "--insecure-http"],
        data_dir.path(),
    );
    assert!(url.starts_with("http://"), "{url}");
    drop(_plain);
    let certs = tempfile::tempdir().expect("certs");
    let tls = private_ca(certs.path());
    let (_tls, url) = server_starts(
        &[
            "--listen",
            "0.0.0.0:0",
            "--tls-cert",
            tls.cert.to_str().expect("UTF-8"),
            "--tls-key",
            tls.key.to_str().expect("UTF-8"),
        ],
        data_dir.path(),
    );
    assert!(url.starts_with("https://"), "{url}");
    // Loopback needs neither (the demo, tests, a proxy on the same host).
    let (_loopback, url) = server_starts(&["--listen", "127.0.0.1:0"], data_dir.path());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
}

#[test]
fn an_advertised_url_carries_no_password() {
    let refused = server_refuses(&[
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        "postgres://sluice@127.0.0.1:1/none",
        "--advertise-url",
        "https://peer:hunter2@a.example.net:7070",
    ])
    .exits(2);
    let error = refused.stderr();
    assert!(error.contains("--advertise-url"), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

#[test]
fn help_says_which_secrets_show_in_the_process_list() {
    let help = Run::of(Command::new(BIN).args(["dashboard", "--help"])).ok();
    let text = help.stdout();
    assert!(text.contains("process list"), "{text}");
    assert!(text.contains("--token-file"), "{text}");
    // A database URL carries a password: the same warning.
    for command in [&["server", "--help"][..], &["db", "copy", "--help"]] {
        let help = Run::of(Command::new(BIN).args(command)).ok().stdout();
        assert!(help.contains("process list"), "{command:?}: {help}");
        assert!(help.contains("SLUICE_DATABASE_URL"), "{command:?}: {help}");
    }
}

/// A fake `xdg-open` in `dir` that writes the URL it is given to `opened`.
fn fake_opener(dir: &Path) {
    let script = dir.join("xdg-open");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1\" > {}\n",
            dir.join("opened").display()
        ),
    )
    .expect("writing xdg-open");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn sluice_dashboard_prints_or_opens_a_one_time_link() {
    let server = Sandbox::start_blocking();
    let printed = server.sluice_blocking(&["dashboard"]).ok();
    let link = printed.stdout().trim().to_owned();
    assert!(
        printed.stderr().contains("works once"),
        "{}",
        printed.stderr()
    );
    assert!(!link.contains(server.admin_token()), "{link}");
    let path = link
        .strip_prefix(server.url())
        .unwrap_or_else(|| panic!("{link} is not on {}", server.url()))
        .to_owned();
    let first = visit(server.url(), &path);
    assert!(first.starts_with("HTTP/1.1 303"), "{first}");
    assert!(set_cookie(&first, "sluice_session").is_some(), "{first}");
    assert!(visit(server.url(), &path).starts_with("HTTP/1.1 410"));

    // --open hands the link to the desktop's browser.
    let bin = tempfile::tempdir().expect("a bin dir");
    fake_opener(bin.path());
    let path_var = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    server
        .command(&["dashboard", "--open"])
        .env("PATH", &path_var)
        .status()
        .expect("running sluice dashboard --open")
        .success()
        .then_some(())
        .expect("sluice dashboard --open succeeds");
    let opened =
        std::fs::read_to_string(bin.path().join("opened")).expect("the browser was given a URL");
    let path = opened
        .trim()
        .strip_prefix(server.url())
        .expect("a link on the server");
    assert!(visit(server.url(), path).starts_with("HTTP/1.1 303"));

    // Agent tokens cannot sign in, and say so.
    let host_token = server.write("agent.token", "");
    let created = server
        .sluice_blocking(&[
            "token",
            "create",
            "--reason",
            "e2e",
            "--role",
            "agent",
            "--host",
            "h1.example.net",
        ])
        .ok();
    std::fs::write(&host_token, created.stdout()).expect("the agent token");
    let refused = server
        .sluice_blocking(&[
            "dashboard",
            "--token-file",
            host_token.to_str().expect("UTF-8"),
        ])
        .exits(1);
    assert!(
        refused.stderr().contains("agent tokens cannot sign in"),
        "{}",
        refused.stderr()
    );
}
