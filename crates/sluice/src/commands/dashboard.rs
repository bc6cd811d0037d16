//! `sluice dashboard [--open]`: a one-time link that signs the browser in
//! to the dashboard with the caller's token, so that nobody pastes a token
//! into a web page. The server makes it (`POST /v1/signin-links`): a random
//! nonce, not the token, valid once and for a minute, on any replica.
//! `--open` hands it to the desktop's browser (`xdg-open`, `open` on macOS)
//! as well as printing it.

use std::process::{Command, Stdio};

use anyhow::anyhow;
use clap::Args;

use crate::commands::connect::{block_on, ConnectArgs};
use crate::exit::Failure;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Also open the link in the browser (xdg-open; open on macOS)
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// The program that opens a URL in the desktop's browser.
const OPENER: &str = if cfg!(target_os = "macos") {
    "open"
} else {
    "xdg-open"
};

pub fn run(args: DashboardArgs) -> Result<(), Failure> {
    let (client, connection) = args.connect.connect()?;
    block_on(async move {
        let link = client
            .signin_link()
            .await
            .map_err(|error| connection.failure("making a dashboard sign-in link", error))?;
        let url = format!("{}{}", client.server_url(), link.path);
        println!("{url}");
        eprintln!(
            "sluice: a one-time sign-in link to the dashboard: it works once, within {}s; run sluice dashboard again for another",
            link.expires_in_s
        );
        if args.open {
            open(&url)?;
        }
        Ok(())
    })
}

/// Hands `url` to the desktop's browser.
fn open(url: &str) -> Result<(), Failure> {
    let status = Command::new(OPENER)
        .arg(url)
        .stdin(Stdio::null())
        .status()
        .map_err(|error| {
            Failure::Failed(anyhow!(
                "opening the link with {OPENER}: {}; open the link above in a browser yourself",
                crate::commands::connect::io_reason(&error)
            ))
        })?;
    if !status.success() {
        return Err(Failure::Failed(anyhow!(
            "{OPENER} could not open the link ({status}); open the link above in a browser yourself"
        )));
    }
    Ok(())
}
