//! How an operator command finds its server and token, and how the server's
//! answers become exit codes.
//!
//! Server: `--server URL`, else `SLUICE_SERVER`, else `http://127.0.0.1:7070`;
//! an `https://` server signed by a private CA is trusted with `--ca-cert`
//! (or `SLUICE_CA_CERT`), beside the system's CAs.
//! Token: `--token T` or `--token-file F`, else `SLUICE_TOKEN` or
//! `SLUICE_TOKEN_FILE`, else the admin token the server wrote beside itself:
//! `<data dir>/admin.token`, the data dir being `--data-dir`, else
//! `SLUICE_DATA_DIR`, else `./sluice-data` (the server's own default).
//!
//! Exit codes: the server judging the input wrong (400, 404, 413, 422) or a
//! bad server URL or token file is invalid input (2); anything else — refused
//! (401, 403, 409), failed (5xx), unreachable — is a failed operation (1).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::Args;
use sluice_client::{Client, ClientError};

use crate::commands::output::OutputArgs;
use crate::exit::Failure;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7070";
const DEFAULT_SOURCE: &str = "the default";
pub const DEFAULT_DATA_DIR: &str = "./sluice-data";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// Where the server is and who we are; part of every operator command's
/// [`RemoteArgs`].
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectArgs {
    /// The sluice server [env: SLUICE_SERVER] [default: http://127.0.0.1:7070]
    #[arg(long, value_name = "URL", help_heading = "Connection")]
    pub server: Option<String>,
    /// API token [env: SLUICE_TOKEN]; default: the admin token beside the server. Every user
    /// of this machine sees it in the process list (ps): prefer --token-file or SLUICE_TOKEN
    #[arg(
        long,
        value_name = "TOKEN",
        conflicts_with = "token_file",
        help_heading = "Connection"
    )]
    pub token: Option<String>,
    /// Read the API token from a file [env: SLUICE_TOKEN_FILE]
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub token_file: Option<PathBuf>,
    /// The server's data dir, to find its admin.token [env: SLUICE_DATA_DIR] [default: ./sluice-data]
    #[arg(long, value_name = "DIR", help_heading = "Connection")]
    pub data_dir: Option<PathBuf>,
    /// Also trust this PEM CA certificate for an https:// server [env: SLUICE_CA_CERT]
    #[arg(long, value_name = "FILE", help_heading = "Connection")]
    pub ca_cert: Option<PathBuf>,
}

/// Where the token came from, to say so when the server refuses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Flag,
    FlagFile(PathBuf),
    Env,
    EnvFile(PathBuf),
    /// The admin token in a server's data dir.
    DataDir(PathBuf),
    /// No token anywhere; `looked_in` is the admin token path tried.
    None {
        looked_in: PathBuf,
    },
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Flag => f.write_str("--token"),
            TokenSource::FlagFile(path) => write!(f, "--token-file {}", path.display()),
            TokenSource::Env => f.write_str("SLUICE_TOKEN"),
            TokenSource::EnvFile(path) => write!(f, "SLUICE_TOKEN_FILE ({})", path.display()),
            TokenSource::DataDir(path) => write!(f, "{}", path.display()),
            TokenSource::None { .. } => f.write_str("nowhere"),
        }
    }
}

/// The resolved server and token.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    pub server: String,
    /// Where the server URL came from (`--server`, `SLUICE_SERVER`, default).
    pub server_source: &'static str,
    pub token: Option<String>,
    pub token_source: TokenSource,
    /// The extra CA certificate (PEM) and where it came from.
    pub ca_cert: Option<(Vec<u8>, String)>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_source", &self.token_source)
            .finish()
    }
}

impl ConnectArgs {
    /// Resolves against the process environment and builds a client.
    pub fn connect(&self) -> Result<(Client, Connection), Failure> {
        let connection = self.resolve(&|name| std::env::var(name).ok())?;
        let mut builder = Client::builder(connection.server.clone())
            .maybe_token(connection.token.clone())
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")));
        if let Some((pem, _)) = &connection.ca_cert {
            builder = builder.ca_certificate_pem(pem.clone());
        }
        let client = builder.build().map_err(|error| match error {
            ClientError::InvalidCaCertificate { .. } => {
                let from = connection.ca_cert.as_ref().map_or("", |(_, from)| from);
                Failure::Invalid(anyhow!("{error} (from {from})"))
            }
            ClientError::InvalidUrl { .. } => {
                Failure::Invalid(anyhow!("{} (from {})", error, connection.server_source))
            }
            ClientError::InvalidToken => {
                Failure::Invalid(anyhow!("{} (from {})", error, connection.token_source))
            }
            other => Failure::Failed(other.into()),
        })?;
        Ok((client, connection))
    }

    /// Flag, else environment (looked up with `env`), else default; see the
    /// module documentation.
    pub fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Connection, Failure> {
        let env = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let (server, server_source) = match (&self.server, env("SLUICE_SERVER")) {
            (Some(server), _) => (server.clone(), "--server"),
            (None, Some(server)) => (server, "SLUICE_SERVER"),
            (None, None) => (DEFAULT_SERVER.to_owned(), DEFAULT_SOURCE),
        };

        let (token, token_source) = if let Some(token) = &self.token {
            if token.trim().is_empty() {
                return Err(Failure::invalid(
                    "--token is empty; pass the API token, or leave --token out to use SLUICE_TOKEN or the admin token beside the server",
                ));
            }
            (Some(token.trim().to_owned()), TokenSource::Flag)
        } else if let Some(path) = &self.token_file {
            let token = read_token(path, "--token-file")?;
            (Some(token), TokenSource::FlagFile(path.clone()))
        } else if let Some(token) = env("SLUICE_TOKEN") {
            (Some(token.trim().to_owned()), TokenSource::Env)
        } else if let Some(path) = env("SLUICE_TOKEN_FILE") {
            let path = PathBuf::from(path);
            let token = read_token(&path, "SLUICE_TOKEN_FILE")?;
            (Some(token), TokenSource::EnvFile(path))
        } else {
            let (dir, explicit) = match (&self.data_dir, env("SLUICE_DATA_DIR")) {
                (Some(dir), _) => (dir.clone(), Some("--data-dir")),
                (None, Some(dir)) => (PathBuf::from(dir), Some("SLUICE_DATA_DIR")),
                (None, None) => (PathBuf::from(DEFAULT_DATA_DIR), None),
            };
            let path = dir.join(ADMIN_TOKEN_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) if !text.trim().is_empty() => {
                    (Some(text.trim().to_owned()), TokenSource::DataDir(path))
                }
                Ok(_) => {
                    return Err(Failure::invalid(format!(
                        "the admin token file {} is empty; pass --token or set SLUICE_TOKEN",
                        path.display()
                    )))
                }
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => match explicit {
                    Some(from) => {
                        return Err(Failure::invalid(format!(
                            "no admin token at {} (data dir from {from}); the server writes it there on its first start: check the directory, or pass --token / set SLUICE_TOKEN",
                            path.display()
                        )))
                    }
                    None => (None, TokenSource::None { looked_in: path }),
                },
                Err(error) => {
                    return Err(Failure::invalid(format!(
                        "cannot read the admin token {}: {}; run as the server's user, or pass --token / set SLUICE_TOKEN",
                        path.display(),
                        io_reason(&error)
                    )))
                }
            }
        };
        let ca_cert = match (&self.ca_cert, env("SLUICE_CA_CERT")) {
            (Some(path), _) => Some((path.clone(), "--ca-cert")),
            (None, Some(path)) => Some((PathBuf::from(path), "SLUICE_CA_CERT")),
            (None, None) => None,
        };
        let ca_cert = match ca_cert {
            Some((path, flag)) => match std::fs::read(&path) {
                Ok(pem) => Some((pem, format!("{flag} {}", path.display()))),
                Err(error) => {
                    return Err(Failure::invalid(format!(
                        "{flag}: cannot read {}: {}",
                        path.display(),
                        io_reason(&error)
                    )))
                }
            },
            None => None,
        };
        Ok(Connection {
            server,
            server_source,
            token,
            token_source,
            ca_cert,
        })
    }
}

fn read_token(path: &Path, from: &str) -> Result<String, Failure> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Ok(_) => Err(Failure::invalid(format!(
            "{from}: {} is empty; it should hold the API token",
            path.display()
        ))),
        Err(error) => Err(Failure::invalid(format!(
            "{from}: cannot read {}: {}",
            path.display(),
            io_reason(&error)
        ))),
    }
}

/// "No such file or directory (os error 2)" → "no such file or directory".
pub fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

impl Connection {
    /// Turns a client error into the command's failure: the exit code, and
    /// what to do about it. `doing` says what failed ("pausing rollout r-7").
    pub fn failure(&self, doing: &str, error: ClientError) -> Failure {
        let status = error.status();
        let hint = match (&error, status) {
            (ClientError::Unreachable { .. }, _) => Some(if self.server_source == DEFAULT_SOURCE {
                "start it with `sluice server` or set SLUICE_SERVER / --server".to_owned()
            } else {
                format!(
                    "start it with `sluice server` or set SLUICE_SERVER / --server (this URL came from {})",
                    self.server_source
                )
            }),
            (ClientError::Decode { .. }, _) => Some(format!(
                "is {} a sluice server of this version ({})?",
                self.server,
                env!("CARGO_PKG_VERSION")
            )),
            (_, Some(401)) => Some(match &self.token_source {
                TokenSource::None { looked_in } => format!(
                    "no token was sent: pass --token or set SLUICE_TOKEN (no admin token at {}; beside the server, use --data-dir or SLUICE_DATA_DIR)",
                    looked_in.display()
                ),
                source => format!("the server did not accept the token from {source}"),
            }),
            (_, Some(403)) => Some(format!(
                "the token from {} lacks the role for this; an admin can create one that has it (`sluice token create --role ROLE`)",
                self.token_source
            )),
            _ => None,
        };
        let message = match hint {
            Some(hint) => format!("{doing}: {error}; {hint}"),
            None => format!("{doing}: {error}"),
        };
        let invalid = matches!(status, Some(400 | 404 | 413 | 422))
            || matches!(
                error,
                ClientError::InvalidUrl { .. } | ClientError::InvalidToken
            );
        if invalid {
            Failure::Invalid(anyhow!(message))
        } else {
            Failure::Failed(anyhow!(message))
        }
    }
}

/// Runs an async command body on a small single-threaded runtime.
pub fn block_on<F>(future: F) -> Result<(), Failure>
where
    F: Future<Output = Result<(), Failure>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| Failure::Failed(anyhow!("starting the async runtime: {error}")))?;
    runtime.block_on(future)
}

/// The flags every operator command takes: where the server is and who we
/// are, and how to print its answers.
#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl RemoteArgs {
    /// See [`ConnectArgs::connect`].
    pub fn connect(&self) -> Result<(Client, Connection), Failure> {
        self.connect.connect()
    }

    /// Whether answers are printed as JSON.
    pub fn json(&self) -> bool {
        self.output.json()
    }

    /// Sends one request and prints the answer (see [`OutputArgs::print`]);
    /// `doing` names the request in a failure ("listing rollouts").
    pub fn show<T: serde::Serialize>(
        &self,
        doing: &str,
        request: impl AsyncFnOnce(&Client) -> Result<T, ClientError>,
        text: impl FnOnce(&T) -> String,
    ) -> Result<(), Failure> {
        let (client, connection) = self.connect()?;
        block_on(async move {
            let answer = request(&client)
                .await
                .map_err(|error| connection.failure(doing, error))?;
            self.output.print(&answer, text)
        })
    }
}

/// `--reason`, required by the operator actions.
#[derive(Debug, Clone, Args)]
pub struct ReasonArgs {
    /// Why (required): recorded with your name in the event log
    #[arg(long, short = 'r', value_name = "REASON")]
    reason: Option<String>,
}

impl ReasonArgs {
    /// The reason, unless missing or blank (see [`require_reason`]).
    pub fn require(&self, what: &str, example: &str) -> Result<String, Failure> {
        require_reason(self.reason.as_deref(), what, example)
    }
}

/// Refuses a blank reason for an operator action; the reason is recorded
/// with the actor in the event log.
fn require_reason(reason: Option<&str>, what: &str, example: &str) -> Result<String, Failure> {
    match reason.map(str::trim) {
        Some(reason) if !reason.is_empty() => Ok(reason.to_owned()),
        Some(_) => Err(Failure::invalid(format!(
            "--reason is empty; say why you {what}: it is recorded with your name in the event log, e.g. {example}"
        ))),
        None => Err(Failure::invalid(format!(
            "--reason is required: say why you {what}; it is recorded with your name in the event log, e.g. {example}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn resolve(args: &ConnectArgs, env: &[(&str, &str)]) -> Result<Connection, String> {
        args.resolve(&env_of(env)).map_err(|failure| match failure {
            Failure::Invalid(error) => format!("invalid: {error}"),
            Failure::Failed(error) => format!("failed: {error}"),
        })
    }

    fn data_dir_with_token(token: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(ADMIN_TOKEN_FILE), format!("{token}\n")).expect("token");
        dir
    }

    #[test]
    fn the_server_comes_from_the_flag_then_the_environment_then_the_default() {
        // A token keeps the data dir out of this test.
        let base = ConnectArgs {
            token: Some("t".into()),
            ..ConnectArgs::default()
        };
        let with_flag = ConnectArgs {
            server: Some("http://flag:1".into()),
            ..base.clone()
        };
        let env = [("SLUICE_SERVER", "http://env:2")];
        let c = resolve(&with_flag, &env).expect("flag");
        assert_eq!(
            (c.server.as_str(), c.server_source),
            ("http://flag:1", "--server")
        );
        let c = resolve(&base, &env).expect("env");
        assert_eq!(
            (c.server.as_str(), c.server_source),
            ("http://env:2", "SLUICE_SERVER")
        );
        let c = resolve(&base, &[("SLUICE_SERVER", "  ")]).expect("blank env is unset");
        assert_eq!(c.server, DEFAULT_SERVER);
    }

    #[test]
    fn the_token_comes_from_the_flag_then_the_environment_then_the_data_dir() {
        let flag_dir = data_dir_with_token("from-flag-dir");
        let env_dir = data_dir_with_token("from-env-dir");
        let token_file = flag_dir.path().join("operator.token");
        std::fs::write(&token_file, "from-token-file\n").expect("token file");
        let env_token_file = env_dir.path().join("env.token");
        std::fs::write(&env_token_file, "from-env-token-file").expect("token file");
        let env_dir_text = env_dir.path().to_str().expect("utf-8");
        let env_token_file_text = env_token_file.to_str().expect("utf-8");

        let all_env = [
            ("SLUICE_TOKEN", "from-env"),
            ("SLUICE_TOKEN_FILE", env_token_file_text),
            ("SLUICE_DATA_DIR", env_dir_text),
        ];
        let flags = ConnectArgs {
            token: Some("from-flag".into()),
            data_dir: Some(flag_dir.path().to_path_buf()),
            ..ConnectArgs::default()
        };
        let token = |args: &ConnectArgs, env: &[(&str, &str)]| {
            resolve(args, env).map(|c| (c.token.unwrap_or_default(), c.token_source))
        };

        assert_eq!(
            token(&flags, &all_env),
            Ok(("from-flag".into(), TokenSource::Flag))
        );
        let file_flag = ConnectArgs {
            token: None,
            token_file: Some(token_file.clone()),
            ..flags.clone()
        };
        assert_eq!(
            token(&file_flag, &all_env),
            Ok(("from-token-file".into(), TokenSource::FlagFile(token_file)))
        );
        let dir_flag_only = ConnectArgs {
            token: None,
            ..flags.clone()
        };
        assert_eq!(
            token(&dir_flag_only, &all_env),
            Ok(("from-env".into(), TokenSource::Env)),
            "an environment token beats a data dir, even one given as a flag"
        );
        assert_eq!(
            token(&dir_flag_only, &all_env[1..]),
            Ok((
                "from-env-token-file".into(),
                TokenSource::EnvFile(env_token_file.clone())
            ))
        );
        assert_eq!(
            token(&dir_flag_only, &all_env[2..]),
            Ok((
                "from-flag-dir".into(),
                TokenSource::DataDir(flag_dir.path().join(ADMIN_TOKEN_FILE))
            )),
            "--data-dir beats SLUICE_DATA_DIR"
        );
        assert_eq!(
            token(&ConnectArgs::default(), &all_env[2..]),
            Ok((
                "from-env-dir".into(),
                TokenSource::DataDir(env_dir.path().join(ADMIN_TOKEN_FILE))
            ))
        );
    }

    #[test]
    fn a_missing_admin_token_is_fine_by_default_and_an_error_when_the_dir_was_named() {
        let empty = tempfile::tempdir().expect("temp dir");
        let args = ConnectArgs {
            data_dir: Some(empty.path().to_path_buf()),
            ..ConnectArgs::default()
        };
        let error = resolve(&args, &[]).expect_err("named dir without token");
        assert!(error.starts_with("invalid: no admin token at"), "{error}");
        assert!(
            error.contains("--data-dir") && error.contains("SLUICE_TOKEN"),
            "{error}"
        );

        // The default ./sluice-data: resolved relative to the working
        // directory, which the test cannot change safely; only check the
        // shape when it is absent.
        if !Path::new(DEFAULT_DATA_DIR).join(ADMIN_TOKEN_FILE).exists() {
            let c = resolve(&ConnectArgs::default(), &[]).expect("no token is fine");
            assert_eq!(c.token, None);
            assert!(matches!(c.token_source, TokenSource::None { .. }));
        }
    }

    #[test]
    fn empty_tokens_are_refused_and_blank_env_tokens_ignored() {
        let args = ConnectArgs {
            token: Some("  ".into()),
            ..ConnectArgs::default()
        };
        let error = resolve(&args, &[]).expect_err("empty flag");
        assert!(error.contains("--token is empty"), "{error}");
        let dir = data_dir_with_token("admin");
        let args = ConnectArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..ConnectArgs::default()
        };
        let c = resolve(&args, &[("SLUICE_TOKEN", "")]).expect("blank env");
        assert_eq!(c.token.as_deref(), Some("admin"));
    }

    #[test]
    fn server_answers_map_to_exit_codes_with_hints() {
        let connection = Connection {
            server: DEFAULT_SERVER.into(),
            server_source: DEFAULT_SOURCE,
            token: None,
            token_source: TokenSource::None {
                looked_in: PathBuf::from("./sluice-data/admin.token"),
            },
            ca_cert: None,
        };
        let api = |status: u16, code: &str| ClientError::Api {
            status,
            error: sluice_api::error::ErrorDetail {
                code: code.into(),
                message: format!("{code} message"),
                field: None,
            },
        };
        for (status, invalid) in [
            (400, true),
            (401, false),
            (403, false),
            (404, true),
            (409, false),
            (413, true),
            (422, true),
            (429, false),
            (500, false),
            (503, false),
        ] {
            let failure = connection.failure("doing", api(status, "x"));
            assert_eq!(matches!(failure, Failure::Invalid(_)), invalid, "{status}");
        }
        let Failure::Failed(error) =
            connection.failure("listing rollouts", api(401, "unauthorized"))
        else {
            panic!("401 is a failed operation");
        };
        let text = error.to_string();
        assert!(
            text.starts_with("listing rollouts: unauthorized message; no token was sent: pass --token or set SLUICE_TOKEN"),
            "{text}"
        );
    }

    #[test]
    fn reasons_are_required_and_not_blank() {
        assert_eq!(
            require_reason(Some(" canary ok "), "start r-1", "x").ok(),
            Some("canary ok".to_owned())
        );
        for reason in [None, Some("  ")] {
            match require_reason(reason, "pause r-7", "--reason \"error rate up\"") {
                Err(Failure::Invalid(error)) => {
                    let text = error.to_string();
                    assert!(
                        text.contains("--reason") && text.contains("pause r-7"),
                        "{text}"
                    );
                }
                other => panic!("{reason:?} was accepted: {other:?}"),
            }
        }
    }
}
