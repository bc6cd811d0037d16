//! `sluice-agent --config /etc/sluice/agent.toml [--once]`: the agent on
//! every host. Exit codes: 0 done (or stopped by SIGTERM/Ctrl-C), 1 the
//! round failed (`--once`) or the state file could not be kept, 2 invalid
//! configuration.
//!
//! The component named `sluice-agent` is the agent's own package: its
//! apply outlives the agent (in a systemd scope of its own when the agent
//! runs as a unit; see `sluice_agent::OwnApply`), and when it replaced the
//! binary while this process still runs, the process execs the new binary
//! with the same arguments.

use std::io::IsTerminal as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sluice_agent::cli::Args;
use sluice_agent::enroll::enroll_host;
use sluice_agent::{Agent, Binary, Client, Exit, FileConfig, OwnApply, ShellOps};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match FileConfig::load(&args.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let read = |path: &std::path::Path, field: &str| {
        std::fs::read_to_string(path)
            .map(|token| token.trim().to_owned())
            .map_err(|error| {
                eprintln!(
                    "error: {}: {field}: cannot read {}: {error}",
                    args.config.display(),
                    path.display()
                );
                ExitCode::from(2)
            })
    };
    // With an enrollment token and no token file yet, the agent enrolls
    // first (with the enrollment token) and writes the token file.
    let (token, enrollment) = match (&config.token_file, &config.enroll_token_file) {
        (Some(path), Some(enroll)) if !path.exists() => match read(enroll, "enroll_token_file") {
            Ok(secret) => (Some(secret), Some(path.clone())),
            Err(code) => return code,
        },
        (Some(path), _) => match read(path, "token_file") {
            Ok(token) => (Some(token), None),
            Err(code) => return code,
        },
        (None, _) => (None, None),
    };
    // One client (one pool, the token, the CA): the agent turns it to each
    // server of the list in turn.
    let mut builder = Client::builder(config.agent.servers.first().as_str())
        .maybe_token(token)
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("sluice-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.ca_file {
        match std::fs::read(path) {
            Ok(pem) => builder = builder.ca_certificate_pem(pem),
            Err(error) => {
                eprintln!(
                    "error: {}: ca_file: cannot read {}: {error}",
                    args.config.display(),
                    path.display()
                );
                return ExitCode::from(2);
            }
        }
    }
    let client = match builder.build() {
        Ok(client) => client,
        Err(error) => {
            let field = match error {
                sluice_client::ClientError::InvalidCaCertificate { .. } => "ca_file",
                sluice_client::ClientError::InvalidToken if enrollment.is_some() => {
                    "enroll_token_file"
                }
                sluice_client::ClientError::InvalidToken => "token_file",
                _ => "server",
            };
            eprintln!("error: {}: {field}: {error}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut ops = ShellOps::new(config.commands, config.labels_cmd);
    if let Some(state_file) = &config.agent.state_file {
        // The own apply's files go beside the state file.
        let dir = match state_file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        ops = ops.with_own_apply(OwnApply::new(dir.to_owned(), OwnApply::under_systemd()));
    }
    // Watched for its replacement by an upgrade of the agent's own package.
    let binary = match Binary::current() {
        Ok(binary) => Some(binary),
        Err(error) => {
            tracing::warn!("cannot tell which binary runs; an upgrade of sluice-agent will not restart it: {error}");
            None
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        pid = std::process::id(),
        "sluice-agent starting"
    );
    let outcome = runtime.block_on(async {
        // With an enrollment token and no token file yet: enroll first.
        let client = match &enrollment {
            Some(token_file) => {
                let enrolled = tokio::select! {
                    enrolled = enroll_host(&client, &config.agent, &ops, token_file, args.once) => enrolled,
                    () = shutdown_signal() => return Ok(Exit::Shutdown),
                };
                match enrolled.map(|token| client.with_token(&token)) {
                    Ok(Ok(client)) => client,
                    Ok(Err(error)) => return Err(format!("the enrolled token: {error}")),
                    Err(error) => return Err(error.to_string()),
                }
            }
            None => client,
        };
        let mut agent =
            Agent::new(config.agent, client, Arc::new(ops)).map_err(|error| error.to_string())?;
        if args.once {
            return agent
                .run_once()
                .await
                .map(|()| Exit::Shutdown)
                .map_err(|error| error.to_string());
        }
        if let Some(binary) = binary.clone() {
            agent = agent.with_binary(binary);
        }
        agent
            .run(shutdown_signal())
            .await
            .map_err(|error| error.to_string())
    });
    drop(runtime);
    match (outcome, binary) {
        (Ok(Exit::Replaced), Some(binary)) => exec(&binary),
        (Ok(_), _) => ExitCode::SUCCESS,
        (Err(error), _) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `binary` (its new file) in this process, with the same arguments;
/// returns only when that fails.
fn exec(binary: &Binary) -> ExitCode {
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(binary.path());
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).exec();
    eprintln!(
        "error: cannot run the new binary {}: {error}",
        binary.path().display()
    );
    ExitCode::FAILURE
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
