//! An agent and an HTTPS server whose certificate a private CA signed: the
//! agent trusts it through `ca_file`, and only then.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::harness::{agent_bin, sluice_bin};

/// The server, killed on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files in `dir`.
fn private_ca(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", cert.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        std::fs::write(dir.join(name), pem).expect("PEM file");
    }
}

fn once(config: &Path) -> Output {
    Command::new(agent_bin())
        .arg("--once")
        .arg("--config")
        .arg(config)
        .output()
        .expect("running sluice-agent --once")
}

#[test]
fn an_agent_trusts_a_private_ca_through_ca_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    private_ca(d);
    let mut server = Command::new(sluice_bin())
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(d.join("data"))
        .arg("--tls-cert")
        .arg(d.join("server.pem"))
        .arg("--tls-key")
        .arg(d.join("server.key"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning sluice server");
    let stdout = server.stdout.take().expect("server stdout");
    let _server = Killed(server);
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("listening on ").map(str::to_owned))
        .expect("the server announces its URL");
    assert!(url.starts_with("https://"), "{url}");

    let token = Command::new(sluice_bin())
        .args([
            "token", "create", "--role", "agent", "--host", "tls.test", "--server", &url,
        ])
        .arg("--ca-cert")
        .arg(d.join("ca.pem"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .output()
        .expect("sluice token create");
    assert!(token.status.success(), "{token:?}");
    let token = String::from_utf8_lossy(&token.stdout);
    std::fs::write(
        d.join("agent.token"),
        token.lines().last().unwrap_or_default(),
    )
    .expect("agent.token");

    let config = |ca_file: &str| {
        format!(
            "server = \"{url}\"\ntoken_file = \"{token}\"\n{ca_file}id = \"tls.test\"\n\
             state_file = \"{state}\"\n\n[[component]]\nname = \"app\"\nversion_cmd = \"echo 1.0\"\n\
             apply_cmd = \"true\"\n",
            token = d.join("agent.token").display(),
            state = d.join("state.json").display(),
        )
    };
    std::fs::write(d.join("untrusting.toml"), config("")).expect("config");
    let refused = once(&d.join("untrusting.toml"));
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{refused:?}"
    );

    let ca_file = format!("ca_file = \"{}\"\n", d.join("ca.pem").display());
    std::fs::write(d.join("agent.toml"), config(&ca_file)).expect("config");
    let checked_in = once(&d.join("agent.toml"));
    assert!(checked_in.status.success(), "{checked_in:?}");
    let hosts = Command::new(sluice_bin())
        .args(["hosts", "list", "--output", "json", "--server", &url])
        .arg("--ca-cert")
        .arg(d.join("ca.pem"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .output()
        .expect("sluice hosts list");
    assert!(hosts.status.success(), "{hosts:?}");
    let listed = String::from_utf8_lossy(&hosts.stdout);
    assert!(
        listed.contains("tls.test") && listed.contains("1.0"),
        "{listed}"
    );
}
