//! Several real `sluice server` replicas on one PostgreSQL database, as an
//! operator runs them highly available: the first admin token made straight
//! in the database (`sluice token create --role admin --database-url`), then
//! replicas `r1`, `r2`, … each with a data dir of its own, `--replica-id`,
//! and a short `--lease-ttl`, on port 0 at first and on the same port after a
//! restart. `r1` starts first and so takes the lease.
//!
//! The database is the caller's (a fresh one per test); the cluster never
//! creates or drops it. Requests to a replica that is stopped (SIGSTOP)
//! hang until it resumes, so whatever polls here asks only the replicas it
//! is told to.

use std::ffi::OsString;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sluice_api::cluster::ClusterView;
use sluice_client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::sandbox::{Preview, Run};
use crate::server::{sluice_bin, Server};
use crate::wait::wait_for;

/// How long a request of [`Cluster::get`] may take.
const GET_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request of an admin client may take: a standby that has not
/// yet learnt of a takeover forwards to the old leader, and if that one is
/// stopped, the request hangs until it resumes; the caller had better ask
/// another replica soon.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Replicas of one database (see the module's documentation).
#[derive(Debug)]
pub struct Cluster {
    database_url: String,
    token: String,
    /// Where CLI runs happen and test files are written.
    work: tempfile::TempDir,
    replicas: Vec<Server>,
    /// An admin client per replica.
    clients: Vec<Client>,
}

/// Who leads, as a replica read it from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The index of the leading replica in the cluster.
    pub leader: usize,
    pub epoch: i64,
}

impl Cluster {
    /// Starts `replicas` replicas on the empty database at `database_url`,
    /// each with `--lease-ttl LEASE_TTL`, the first one alone at first so
    /// that it takes the lease.
    pub async fn start(database_url: &str, replicas: usize, lease_ttl: &str) -> Cluster {
        assert!(replicas > 0, "a cluster has at least one replica");
        let work = tempfile::tempdir().expect("creating the work dir");
        let mut command = bare_command(work.path());
        command.args([
            "token",
            "create",
            "--role",
            "admin",
            "--name",
            "admin",
            "--database-url",
            database_url,
            "--reason",
            "the test cluster's first admin",
        ]);
        let created = tokio::task::spawn_blocking(move || Run::of(&mut command))
            .await
            .expect("the CLI thread")
            .ok();
        let token = created.stdout().trim().to_owned();
        assert!(!token.is_empty(), "token create printed the token");
        let mut cluster = Cluster {
            database_url: database_url.to_owned(),
            token,
            work,
            replicas: Vec::new(),
            clients: Vec::new(),
        };
        for index in 0..replicas {
            let name = replica_id(index);
            let args: Vec<OsString> = [
                "--database-url",
                database_url,
                "--replica-id",
                &name,
                "--lease-ttl",
                lease_ttl,
            ]
            .iter()
            .map(OsString::from)
            .collect();
            let data_dir = tempfile::tempdir().expect("creating a data dir");
            let server = Server::start(&name, data_dir, args).await;
            let client = Client::builder(server.url())
                .token(&cluster.token)
                .timeout(CLIENT_TIMEOUT)
                .connect_timeout(CLIENT_TIMEOUT)
                .build()
                .expect("building an admin client");
            cluster.replicas.push(server);
            cluster.clients.push(client);
            if index == 0 {
                let first = cluster.wait_for_leader(&[0], None).await;
                assert_eq!(first.leader, 0, "the first replica takes the lease");
            }
        }
        cluster
    }

    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The admin token, made in the database before any replica started.
    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn replica(&self, index: usize) -> &Server {
        &self.replicas[index]
    }

    pub fn replica_mut(&mut self, index: usize) -> &mut Server {
        &mut self.replicas[index]
    }

    /// The base URL of every replica, in order.
    pub fn urls(&self) -> Vec<String> {
        self.replicas
            .iter()
            .map(|server| server.url().to_owned())
            .collect()
    }

    /// A client of replica `index` with the admin token (requests time out
    /// after 5 s).
    pub fn client(&self, index: usize) -> &Client {
        &self.clients[index]
    }

    /// The index of the replica with id `id` (`r2` is 1).
    pub fn index_of(&self, id: &str) -> Option<usize> {
        (0..self.len()).find(|&index| replica_id(index) == id)
    }

    /// Writes `text` to `name` in the work dir and returns its path.
    pub fn write(&self, name: &str, text: impl Display) -> PathBuf {
        let path = self.work.path().join(name);
        std::fs::write(&path, text.to_string()).expect("writing a test file");
        path
    }

    /// `sluice ARGS` as an operator runs it against replica `index`: its URL
    /// in `SLUICE_SERVER`, the admin token in `SLUICE_TOKEN`.
    pub fn command(&self, index: usize, args: &[&str]) -> Command {
        let mut command = bare_command(self.work.path());
        command
            .args(args)
            .env("SLUICE_SERVER", self.replicas[index].url())
            .env("SLUICE_TOKEN", &self.token);
        command
    }

    /// Runs [`Cluster::command`] on a blocking thread.
    pub async fn sluice(&self, index: usize, args: &[&str]) -> Run {
        let mut command = self.command(index, args);
        tokio::task::spawn_blocking(move || Run::of(&mut command))
            .await
            .expect("the CLI thread")
    }

    /// `sluice hosts import FLEET` through replica `index`; returns how many
    /// hosts it imported.
    pub async fn import(&self, index: usize, fleet: &Path) -> u64 {
        let fleet = fleet.to_str().expect("a UTF-8 path");
        let imported = self
            .sluice(
                index,
                &[
                    "hosts",
                    "import",
                    fleet,
                    "--reason",
                    "test fleet",
                    "--output",
                    "json",
                ],
            )
            .await
            .ok()
            .json();
        imported["imported"].as_u64().expect("imported: a count")
    }

    /// `sluice plan preview -f PLAN --fleet FLEET --json` (no server).
    pub async fn preview(&self, plan: &Path, fleet: &Path) -> Preview {
        let mut command = bare_command(self.work.path());
        command
            .args(["plan", "preview", "-f"])
            .arg(plan)
            .arg("--fleet")
            .arg(fleet)
            .arg("--json");
        let run = tokio::task::spawn_blocking(move || Run::of(&mut command))
            .await
            .expect("the CLI thread")
            .ok();
        Preview::from_json(&run.json())
    }

    /// `sluice rollout create -f PLAN --start` through replica `index`;
    /// returns the rollout's id.
    pub async fn start_rollout(&self, index: usize, plan: &Path, reason: &str) -> String {
        let plan = plan.to_str().expect("a UTF-8 path");
        let created = self
            .sluice(
                index,
                &[
                    "rollout", "create", "-f", plan, "--start", "--reason", reason, "--output",
                    "json",
                ],
            )
            .await
            .ok()
            .json();
        created["id"]
            .as_str()
            .expect("create prints {\"id\": …}")
            .to_owned()
    }

    /// `sluice rollout ACTION ID --reason REASON` through replica `index`;
    /// the rollout's summary it prints once the action is durable.
    pub async fn rollout_action(
        &self,
        index: usize,
        id: &str,
        action: &str,
        reason: &str,
    ) -> serde_json::Value {
        self.sluice(
            index,
            &[
                "rollout", action, id, "--reason", reason, "--output", "json",
            ],
        )
        .await
        .ok()
        .json()
    }

    /// `GET PATH` of replica `index` without a token: the status and the
    /// body; `None` when it did not answer within a few seconds.
    pub async fn get(&self, index: usize, path: &str) -> Option<(u16, String)> {
        let address = self.replicas[index].address();
        tokio::time::timeout(GET_TIMEOUT, get(address, path))
            .await
            .ok()
            .flatten()
    }

    /// `GET /readyz` of replica `index`: its role (`leader`, `standby`) when
    /// it is ready, else what it answered.
    pub async fn readiness(&self, index: usize) -> Result<String, String> {
        match self.get(index, "/readyz").await {
            Some((200, body)) => {
                let json: serde_json::Value = serde_json::from_str(&body)
                    .map_err(|error| format!("/readyz is not JSON ({error}): {body}"))?;
                json["role"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("/readyz names no role: {body}"))
            }
            Some((status, body)) => Err(format!("{status} {body}")),
            None => Err("no answer".to_owned()),
        }
    }

    /// `GET /v1/cluster` through replica `index`.
    pub async fn view(&self, index: usize) -> Result<ClusterView, String> {
        self.clients[index]
            .cluster()
            .await
            .map_err(|error| error.to_string())
    }

    /// Who leads, as the first of `ask` that answers reads it; an error
    /// says what they answered instead.
    pub async fn leadership(&self, ask: &[usize]) -> Result<Leadership, String> {
        let mut seen = Vec::new();
        for &index in ask {
            match self.view(index).await {
                Ok(view) => match (&view.leader, view.epoch) {
                    (Some(leader), Some(epoch)) => {
                        let leader = self
                            .index_of(leader)
                            .ok_or_else(|| format!("{leader} is not a replica of the cluster"))?;
                        return Ok(Leadership { leader, epoch });
                    }
                    _ => seen.push(format!("{}: no leader ({view:?})", replica_id(index))),
                },
                Err(error) => seen.push(format!("{}: {error}", replica_id(index))),
            }
        }
        Err(seen.join("; "))
    }

    /// Waits (within the spec's 15 s bound of a takeover, and slack for a
    /// busy machine) until a replica leads whose epoch is above `after`'s,
    /// as the replicas `ask` see it; returns who leads. Also waits until
    /// the leader is ready to serve.
    pub async fn wait_for_leader(&self, ask: &[usize], after: Option<&Leadership>) -> Leadership {
        let what = match after {
            Some(old) => format!(
                "a replica to take over from {} (epoch {})",
                replica_id(old.leader),
                old.epoch
            ),
            None => "a replica to lead".to_owned(),
        };
        wait_for(&what, TAKEOVER_DEADLINE, || async {
            let now = self.leadership(ask).await?;
            if after.is_some_and(|old| now.epoch <= old.epoch) {
                return Err(format!("still {now:?}"));
            }
            match self.readiness(now.leader).await {
                Ok(role) if role == "leader" => Ok(now),
                other => Err(format!("{now:?}, its /readyz: {other:?}")),
            }
        })
        .await
    }
}

/// How long a takeover may take here: the spec's 15 s bound, plus slack for
/// a debug build on a busy 2-core machine; a takeover that needs more is a
/// bug worth a failing test.
pub const TAKEOVER_DEADLINE: Duration = Duration::from_secs(30);

/// The id of replica `index`: `r1`, `r2`, ….
pub fn replica_id(index: usize) -> String {
    format!("r{}", index + 1)
}

/// `sluice` run from `work`, with nothing of the test's environment that
/// would point it elsewhere.
fn bare_command(work: &Path) -> Command {
    let mut command = Command::new(sluice_bin());
    command
        .current_dir(work)
        .env_remove("SLUICE_SERVER")
        .env_remove("SLUICE_TOKEN")
        .env_remove("SLUICE_TOKEN_FILE")
        .env_remove("SLUICE_DATA_DIR")
        .env_remove("SLUICE_DATABASE_URL")
        .stdin(Stdio::null());
    command
}

/// A plain `GET` over a connection of its own.
async fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_owned();
    Some((status, body))
}
