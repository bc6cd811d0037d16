//! `sluice-agent --config /etc/sluice/agent.toml [--once]`: the agent on
//! every host. Exit codes: 0 done (or stopped by SIGTERM/Ctrl-C), 1 the
//! round failed (`--once`) or the state file could not be kept, 2 invalid
//! configuration.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use sluice_agent::cli::Args;
use sluice_agent::enroll::enroll_host;
use sluice_agent::{Agent, Client, FileConfig, ShellOps};
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
    let ops = Arc::new(ShellOps::new(config.commands, config.labels_cmd));
    let outcome = runtime.block_on(async {
        let client = match &enrollment {
            Some(token_file) => {
                let enrolled = tokio::select! {
                    enrolled = enroll_host(&client, &config.agent, &*ops, token_file, args.once) => enrolled,
                    () = shutdown_signal() => return Ok(()),
                };
                match enrolled.map(|token| client.with_token(&token)) {
                    Ok(Ok(client)) => client,
                    Ok(Err(error)) => return Err(format!("the enrolled token: {error}")),
                    Err(error) => return Err(error.to_string()),
                }
            }
            None => client,
        };
        let agent = Agent::new(config.agent, client, ops).map_err(|error| error.to_string())?;
        if args.once {
            agent.run_once().await
        } else {
            agent.run(shutdown_signal()).await
        }
        .map_err(|error| error.to_string())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
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
