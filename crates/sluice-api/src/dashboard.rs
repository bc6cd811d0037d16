//! Signing in to the dashboard without pasting a secret: a one-time link.

use crate::wire;

wire! {
/// A one-time sign-in link for the caller's token (`POST /v1/signin-links`):
/// visiting `path` on any replica of the server, once and within
/// `expires_in_s` seconds, opens a dashboard session acting with that token.
/// The path holds a random nonce, never the token.
pub struct SigninLink {
    /// The link's path on the server, `/signin/link/NONCE`.
    pub path: String,
    /// Seconds the link stays valid from now.
    pub expires_in_s: u64,
}
}
