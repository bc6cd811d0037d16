//! `sluice freeze on|off|status` (the fleet-wide hold), `sluice components
//! [set-stable]` and `sluice token create` (through a server, or straight
//! into a PostgreSQL database with `--database-url` to bootstrap a cluster).

use clap::{Args, Subcommand, ValueEnum};
use sluice_api::admin::{
    ComponentView, FreezeView, Role, StableChange, StableRequest, TokenCreated, TokenRequest,
    TokenView,
};
use sluice_api::HostId;
use sluice_client::Client;
use sluice_core::selector::Selector;
use sluice_server::DatabaseUrl;

use crate::commands::connect::{block_on, ReasonArgs, RemoteArgs};
use crate::commands::output::{self, plural, print_json, print_text, relative, timestamp, Table};
use crate::exit::Failure;

#[derive(Debug, Subcommand)]
pub enum FreezeCommand {
    /// Hold every rollout now: no host is admitted anywhere until `freeze off`
    On(FreezeArgs),
    /// Release the hold; rollouts carry on where they stood
    Off(FreezeArgs),
    /// Whether the fleet is frozen, since when, by whom and why
    Status(FreezeStatusArgs),
}

#[derive(Debug, Args)]
pub struct FreezeArgs {
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct FreezeStatusArgs {
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ComponentsArgs {
    #[command(subcommand)]
    command: Option<ComponentsCommand>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum ComponentsCommand {
    /// Move a component's stable version: what hosts outside any rollout run.
    /// Says first how many hosts would change at once; --yes goes on
    SetStable(SetStableArgs),
}

#[derive(Debug, Args)]
pub struct SetStableArgs {
    /// The component
    #[arg(value_name = "COMPONENT")]
    component: String,
    /// Its new stable version
    #[arg(value_name = "VERSION")]
    version: String,
    #[command(flatten)]
    reason: ReasonArgs,
    /// Go on after seeing how many hosts change at once (without it,
    /// nothing changes)
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; prints the secret (shown once) alone on its last line
    Create(TokenCreateArgs),
    /// The tokens: id, name, role, binding, created, expires, last used, uses left (never a secret)
    List(TokenListArgs),
    /// Revoke a token by its id (from token list) or its name: refused from then on
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenListArgs {
    /// Only tokens of this role
    #[arg(long, value_enum, value_name = "ROLE")]
    role: Option<RoleArg>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token's id (sluice token list) or its name
    #[arg(value_name = "ID|NAME")]
    id: String,
    #[command(flatten)]
    reason: ReasonArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The roles a token can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Check-in only, for one host's agent (with --host)
    Agent,
    /// Enrolls hosts whose labels match --selector, --uses times, and nothing else
    Enroll,
    /// Read everything, change nothing
    Viewer,
    /// Create rollouts and act on them
    Operator,
    /// Everything, including tokens and the freeze
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Agent => Role::Agent,
            RoleArg::Enroll => Role::Enroll,
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token may do
    #[arg(long, value_enum, value_name = "ROLE")]
    role: RoleArg,
    /// For an agent token: the host id (FQDN) it may check in as
    #[arg(long, value_name = "HOST")]
    host: Option<HostId>,
    /// A note on whom the token is for (token revoke NAME finds it by it)
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// For an enrollment token: the label selector the hosts it enrolls must
    /// match, e.g. "site in (sto, lon)"
    #[arg(long, value_name = "SELECTOR")]
    selector: Option<String>,
    /// For an enrollment token: how many hosts it may enroll
    #[arg(long, value_name = "N")]
    uses: Option<u64>,
    /// The token is refused this long after its creation: 30m, 24h, 7d, 1h30m
    /// (at most a year); without it, it does not expire
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    #[command(flatten)]
    reason: ReasonArgs,
    /// Write the token straight into this PostgreSQL database, no server needed (a
    /// cluster's first admin token): postgres://USER:PASSWORD@HOST:PORT/DB
    /// [env: SLUICE_DATABASE_URL, unless --server is given]. Every user of the machine sees
    /// the flag in the process list: prefer SLUICE_DATABASE_URL
    #[arg(
        long,
        value_name = "URL",
        help_heading = "Connection",
        conflicts_with_all = ["server", "token", "token_file", "data_dir", "ca_cert"]
    )]
    database_url: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// The variable `--database-url` falls back to (as `sluice server`'s does).
const DATABASE_URL_VAR: &str = "SLUICE_DATABASE_URL";

pub fn freeze(command: FreezeCommand) -> Result<(), Failure> {
    match command {
        FreezeCommand::On(args) => set_freeze(true, args),
        FreezeCommand::Off(args) => set_freeze(false, args),
        FreezeCommand::Status(args) => freeze_status(args),
    }
}

fn set_freeze(on: bool, args: FreezeArgs) -> Result<(), Failure> {
    let (what, example, doing) = if on {
        (
            "freeze the fleet",
            "sluice freeze on --reason \"INC-42: registry outage\"",
            "freezing the fleet",
        )
    } else {
        (
            "release the freeze",
            "sluice freeze off --reason \"INC-42 resolved\"",
            "releasing the freeze",
        )
    };
    let reason = args.reason.require(what, example)?;
    args.remote.show(
        doing,
        async |client| {
            if on {
                client.freeze_on(&reason).await
            } else {
                client.freeze_off(&reason).await
            }
        },
        |view| render_freeze(view, jiff::Timestamp::now()),
    )
}

fn freeze_status(args: FreezeStatusArgs) -> Result<(), Failure> {
    args.remote
        .show("reading the freeze", Client::freeze, |view| {
            render_freeze(view, jiff::Timestamp::now())
        })
}

fn render_freeze(view: &FreezeView, now: jiff::Timestamp) -> String {
    if !view.frozen {
        return "not frozen: rollouts admit hosts as their plans say\n".to_owned();
    }
    let mut text = String::from("FROZEN: every rollout is held and admits no host");
    if let Some(since) = &view.since {
        text.push_str(&format!(
            "\n  since   {} ({})",
            output::timestamp(since),
            output::relative(since, now)
        ));
    }
    if let Some(actor) = &view.actor {
        text.push_str(&format!("\n  by      {actor}"));
    }
    if let Some(reason) = &view.reason {
        text.push_str(&format!("\n  reason  {reason}"));
    }
    text.push_str("\nrelease with: sluice freeze off --reason \"…\"\n");
    text
}

pub fn components(args: ComponentsArgs) -> Result<(), Failure> {
    if let Some(ComponentsCommand::SetStable(args)) = args.command {
        return set_stable(args);
    }
    args.remote.show(
        "listing components",
        Client::components,
        |list| {
            if list.components.is_empty() {
                return "no components yet: they appear when agents report them or hosts are imported\n".to_owned();
            }
            render_components(&list.components)
        },
    )
}

fn render_components(components: &[ComponentView]) -> String {
    let mut table =
        Table::new(&["COMPONENT", "STABLE", "HOSTS", "VERSIONS", "ROLLOUTS"]).right(&[2]);
    for component in components {
        let mut versions: Vec<(&String, &u64)> = component.versions.iter().collect();
        versions.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        let hosts: u64 = component.versions.values().sum();
        table.row(vec![
            component.name.clone(),
            component
                .stable_version
                .clone()
                .unwrap_or_else(|| "-".into()),
            hosts.to_string(),
            versions
                .iter()
                .map(|(version, count)| format!("{version}:{count}"))
                .collect::<Vec<_>>()
                .join(" "),
            if component.active_rollouts.is_empty() {
                "-".into()
            } else {
                component.active_rollouts.join(",")
            },
        ]);
    }
    table.render()
}

fn set_stable(args: SetStableArgs) -> Result<(), Failure> {
    let reason = args.reason.require(
        "move the stable version",
        "sluice components set-stable docker-engine 17.03.1 --reason \"CHG-7: every site upgraded\"",
    )?;
    let (client, connection) = args.remote.connect()?;
    block_on(async move {
        let mut request = StableRequest {
            version: args.version.clone(),
            reason,
            dry_run: true,
        };
        let preview = client
            .set_stable(&args.component, &request)
            .await
            .map_err(|error| connection.failure("previewing the stable version", error))?;
        let already = preview.from.as_deref() == Some(preview.to.as_str());
        if !args.yes || already {
            args.remote.output.print(&preview, render_stable)?;
            if already {
                return Ok(());
            }
            return Err(Failure::invalid(format!(
                "nothing changed: re-run with --yes to tell {} at once",
                hosts(preview.hosts_changed)
            )));
        }
        request.dry_run = false;
        let change = client
            .set_stable(&args.component, &request)
            .await
            .map_err(|error| connection.failure("moving the stable version", error))?;
        args.remote.output.print(&change, render_stable)
    })
}

fn hosts(count: u64) -> String {
    if count == 1 {
        "1 host".to_owned()
    } else {
        format!("{count} hosts")
    }
}

fn render_stable(change: &StableChange) -> String {
    let from = change.from.as_deref().unwrap_or("none");
    let changed = hosts(change.hosts_changed);
    let of = change.hosts_with_component;
    if change.applied {
        format!(
            "{}: stable version {from} -> {}; {changed} of {of} change at their next check-in\n",
            change.component, change.to
        )
    } else if change.from.as_deref() == Some(change.to.as_str()) {
        format!(
            "{}: the stable version is already {}\n",
            change.component, change.to
        )
    } else {
        format!(
            "{}: moving the stable version {from} -> {} tells {changed} (of {of} with the component) to change at once, without stages or gates\n",
            change.component, change.to
        )
    }
}

pub fn token(command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::Create(args) => create_token(args),
        TokenCommand::List(args) => list_tokens(args),
        TokenCommand::Revoke(args) => revoke_token(args),
    }
}

/// The request of `args`, its flags checked against each other and their
/// values against sluice's grammars (the server checks them again).
fn token_request(args: &TokenCreateArgs) -> Result<TokenRequest, Failure> {
    if args.host.is_some() && args.role != RoleArg::Agent {
        return Err(Failure::invalid(
            "--host binds an agent token to one host; use it with --role agent",
        ));
    }
    if args.role == RoleArg::Agent && args.host.is_none() {
        return Err(Failure::invalid(
            "an agent token is bound to one host: give its id with --host HOST (or let hosts enroll: --role enroll --selector S --uses N)",
        ));
    }
    let enroll = args.role == RoleArg::Enroll;
    match (enroll, &args.selector, args.uses) {
        (true, None, _) => {
            return Err(Failure::invalid(
                "an enrollment token needs --selector, the hosts it may enroll, e.g. --selector 'site in (sto, lon)'",
            ))
        }
        (true, _, None) => {
            return Err(Failure::invalid(
                "an enrollment token needs --uses N, how many hosts it may enroll",
            ))
        }
        (false, Some(_), _) | (false, _, Some(_)) => {
            return Err(Failure::invalid(
                "--selector and --uses are for enrollment tokens; use them with --role enroll",
            ))
        }
        _ => {}
    }
    if let Some(selector) = &args.selector {
        Selector::parse(selector).map_err(|error| {
            Failure::invalid(format!(
                "--selector {selector:?}: {error}; selectors look like \"site in (sto, lon), role=edge\""
            ))
        })?;
    }
    if let Some(expires) = &args.expires {
        sluice_api::duration::parse_seconds(expires)
            .map_err(|error| Failure::invalid(format!("--expires: {error}")))?;
    }
    let reason = args.reason.require(
        "create this token",
        "sluice token create --role enroll --selector 'site=sto' --uses 500 --expires 24h --reason \"CHG-12: racking the sto hosts\"",
    )?;
    Ok(TokenRequest {
        role: args.role.into(),
        host: args.host.clone(),
        name: args.name.clone(),
        selector: args.selector.clone(),
        uses: args.uses,
        expires: args.expires.clone(),
        reason,
    })
}

fn create_token(args: TokenCreateArgs) -> Result<(), Failure> {
    let request = token_request(&args)?;
    let env = |name: &str| std::env::var(name).ok();
    if let Some(url) = database_url(&args, &env) {
        return create_in_database(args, request, &url);
    }
    let (client, connection) = args.remote.connect()?;
    block_on(async move {
        let created = client
            .request_token(&request)
            .await
            .map_err(|error| connection.failure("creating a token", error))?;
        show_created(&created, "", &args.remote)
    })
}

fn list_tokens(args: TokenListArgs) -> Result<(), Failure> {
    let role = args.role.map(Role::from);
    args.remote.show(
        "listing tokens",
        async |client| {
            // Every page, then oldest first, as they were made.
            let mut list = client.tokens(role).await?;
            list.tokens
                .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
            Ok(list)
        },
        |list| {
            if list.tokens.is_empty() {
                return "no tokens\n".to_owned();
            }
            render_tokens(&list.tokens, jiff::Timestamp::now())
        },
    )
}

fn render_tokens(tokens: &[TokenView], now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "ID",
        "NAME",
        "ROLE",
        "BINDING",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "USES LEFT",
    ])
    .right(&[7]);
    let or_dash = |text: Option<String>| text.unwrap_or_else(|| "-".to_owned());
    for token in tokens {
        let binding = match (&token.host, &token.selector) {
            (Some(host), Some(selector)) => format!("host {host}, {selector}"),
            (Some(host), None) => format!("host {host}"),
            (None, Some(selector)) => selector.clone(),
            (None, None) => "-".to_owned(),
        };
        let expires = match (&token.expires_at, token.expired) {
            (Some(at), true) => format!("expired {}", timestamp(at)),
            (Some(at), false) => timestamp(at),
            (None, _) => "never".to_owned(),
        };
        table.row(vec![
            token.id.clone(),
            or_dash(token.name.clone()),
            token.role.as_str().to_owned(),
            binding,
            timestamp(&token.created_at),
            expires,
            token
                .last_used_at
                .as_deref()
                .map_or_else(|| "never".to_owned(), |at| relative(at, now)),
            or_dash(token.uses_left.map(|uses| uses.to_string())),
        ]);
    }
    table.render()
}

fn revoke_token(args: TokenRevokeArgs) -> Result<(), Failure> {
    let id = args.id.clone();
    let reason = args.reason.require(
        "revoke this token",
        &format!("sluice token revoke {id} --reason \"INC-42: the token leaked in a CI log\""),
    )?;
    args.remote.show(
        "revoking a token",
        async |client| client.revoke_token(&id, &reason).await,
        |revoked| {
            let mut text = format!("revoked {} token {}", revoked.role, revoked.id);
            if let Some(name) = &revoked.name {
                text.push_str(&format!(" ({name})"));
            }
            if let Some(host) = &revoked.host {
                text.push_str(&format!(" of host {host}"));
            }
            text.push_str(": it is refused from now on");
            if revoked.sessions_ended > 0 {
                text.push_str(&format!(
                    "; {} signed in with it ended",
                    plural(revoked.sessions_ended, "dashboard session")
                ));
            }
            text.push('\n');
            text
        },
    )
}

/// The database to write the token into: `--database-url`, else
/// `SLUICE_DATABASE_URL` unless `--server` names a server to go through.
fn database_url(args: &TokenCreateArgs, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match (&args.database_url, &args.remote.connect.server) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(_)) => None,
        (None, None) => env(DATABASE_URL_VAR).filter(|url| !url.trim().is_empty()),
    }
}

/// `sluice token create --database-url URL`: the token goes straight into
/// the database, where a running leader accepts it at its first use.
fn create_in_database(
    args: TokenCreateArgs,
    request: TokenRequest,
    url: &str,
) -> Result<(), Failure> {
    let url = DatabaseUrl::new(url);
    block_on(async move {
        let created = sluice_server::auth::create_in_database(&url, &request, &actor())
            .await
            .map_err(|error| Failure::Failed(error.context("creating a token in the database")))?;
        show_created(&created, &format!(" in the database {url}"), &args.remote)
    })
}

/// Who creates a token with `--database-url`, for the event log: the
/// user running the command.
fn actor() -> String {
    match ["USER", "LOGNAME"].iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|user| !user.trim().is_empty())
    }) {
        Some(user) => format!("cli:{user}"),
        None => "cli".to_owned(),
    }
}

/// Prints a new token: as JSON, or a note on stderr and the secret alone on
/// stdout (a script takes it with $(…) or `| tail -1`). `place` says where
/// it was created, after the token's description.
fn show_created(created: &TokenCreated, place: &str, remote: &RemoteArgs) -> Result<(), Failure> {
    if remote.json() {
        return print_json(created);
    }
    let role = created.role.as_str();
    let mut note = format!("created {} {role} token {}", article(role), created.id);
    if let Some(host) = &created.host {
        note.push_str(&format!(" for host {host}"));
    }
    if let Some(name) = &created.name {
        note.push_str(&format!(" ({name})"));
    }
    if let (Some(selector), Some(uses)) = (&created.selector, created.uses_left) {
        note.push_str(&format!(
            " enrolling up to {} matching {selector}",
            plural(uses, "host")
        ));
    }
    if let Some(at) = &created.expires_at {
        note.push_str(&format!(", expiring {}", timestamp(at)));
    }
    eprintln!("{note}{place}; it is shown only this once:");
    print_text(&format!("{}\n", created.token))
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::Parser;

    use super::*;

    /// `sluice token create`'s flags.
    #[derive(Debug, Parser)]
    struct Create {
        #[command(flatten)]
        args: TokenCreateArgs,
    }

    fn database(flags: &[&str], env: Option<&str>) -> Result<Option<String>, String> {
        let parsed = Create::try_parse_from(["create", "--role", "admin"].iter().chain(flags))
            .map_err(|error| error.kind().to_string())?;
        let env = |name: &str| (name == DATABASE_URL_VAR).then(|| env.map(str::to_owned))?;
        Ok(database_url(&parsed.args, &env))
    }

    #[test]
    fn the_database_comes_from_the_flag_else_the_environment_unless_a_server_is_named() {
        let flag = ["--database-url", "postgres://flag/db"];
        let env = Some("postgres://env/db");
        assert_eq!(database(&flag, env), Ok(Some("postgres://flag/db".into())));
        assert_eq!(database(&[], env), Ok(Some("postgres://env/db".into())));
        assert_eq!(database(&["--server", "http://s:1"], env), Ok(None));
        assert_eq!(database(&[], Some(" ")), Ok(None));
        assert_eq!(database(&[], None), Ok(None));
        for other in [
            ["--server", "http://s:1"],
            ["--token", "slc_x"],
            ["--data-dir", "/var/lib/sluice"],
        ] {
            let flags = [flag[0], flag[1], other[0], other[1]];
            assert!(database(&flags, None).is_err(), "{other:?}");
        }
    }

    #[test]
    fn a_freeze_says_since_when_by_whom_and_why() -> Result<(), jiff::Error> {
        let now: jiff::Timestamp = "2024-06-01T10:00:00Z".parse()?;
        let view = FreezeView {
            frozen: true,
            actor: Some("alice".into()),
            reason: Some("INC-42: registry outage".into()),
            since: Some("2024-06-01T09:45:00Z".into()),
        };
        expect_test::expect![[r#"
            FROZEN: every rollout is held and admits no host
              since   2024-06-01 09:45:00Z (15m ago)
              by      alice
              reason  INC-42: registry outage
            release with: sluice freeze off --reason "…"
        "#]]
        .assert_eq(&render_freeze(&view, now));
        let thawed = FreezeView {
            frozen: false,
            actor: None,
            reason: None,
            since: None,
        };
        assert!(render_freeze(&thawed, now).starts_with("not frozen"));
        Ok(())
    }

    #[test]
    fn tokens_list_their_binding_expiry_last_use_and_uses_never_a_secret() -> Result<(), jiff::Error>
    {
        let now: jiff::Timestamp = "2026-03-01T10:00:00Z".parse()?;
        let token = |id: &str, role: Role| TokenView {
            id: id.into(),
            name: None,
            role,
            host: None,
            selector: None,
            created_at: "2026-03-01T09:00:00Z".into(),
            expires_at: None,
            expired: false,
            last_used_at: None,
            uses_left: None,
        };
        let tokens = [
            TokenView {
                name: Some("rack-42".into()),
                selector: Some("site in (lon, sto)".into()),
                expires_at: Some("2026-03-02T09:00:00Z".into()),
                last_used_at: Some("2026-03-01T09:59:00Z".into()),
                uses_left: Some(4998),
                ..token("1b4f0e9851971998", Role::Enroll)
            },
            TokenView {
                host: Some("a1.example.net".into()),
                selector: Some("site in (lon, sto)".into()),
                last_used_at: Some("2026-03-01T09:59:30Z".into()),
                ..token("60303ae22b998861", Role::Agent)
            },
            TokenView {
                expires_at: Some("2026-03-01T09:30:00Z".into()),
                expired: true,
                ..token("9f86d081884c7d65", Role::Viewer)
            },
        ];
        expect_test::expect![[r#"
            ID                NAME     ROLE    BINDING                                  CREATED               EXPIRES                       LAST USED  USES LEFT
            1b4f0e9851971998  rack-42  enroll  site in (lon, sto)                       2026-03-01 09:00:00Z  2026-03-02 09:00:00Z          1m ago          4998
            60303ae22b998861  -        agent   host a1.example.net, site in (lon, sto)  2026-03-01 09:00:00Z  never                         30s ago            -
            9f86d081884c7d65  -        viewer  -                                        2026-03-01 09:00:00Z  expired 2026-03-01 09:30:00Z  never              -
        "#]]
        .assert_eq(&render_tokens(&tokens, now));
        Ok(())
    }

    #[test]
    fn components_list_versions_most_common_first() {
        let components = [
            ComponentView {
                name: "docker-engine".into(),
                stable_version: Some("1.12.6".into()),
                versions: BTreeMap::from([("1.12.6".into(), 432), ("17.03.1".into(), 48)]),
                drifted: 0,
                active_rollouts: vec!["r-7".into()],
            },
            ComponentView {
                name: "kernel".into(),
                stable_version: None,
                versions: BTreeMap::from([("6.1".into(), 480)]),
                drifted: 0,
                active_rollouts: vec![],
            },
        ];
        expect_test::expect![[r#"
            COMPONENT      STABLE  HOSTS  VERSIONS               ROLLOUTS
            docker-engine  1.12.6    480  1.12.6:432 17.03.1:48  r-7
            kernel         -         480  6.1:480                -
        "#]]
        .assert_eq(&render_components(&components));
    }
}
