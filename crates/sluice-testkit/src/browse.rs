//! [`visit`]: what a browser sends when it follows a link (a plain `GET`,
//! no cookie, no token), for tests of the dashboard's one-time sign-in
//! links without a browser or an HTTP client crate.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

/// The head of the answer to `GET path` on the plain-HTTP server at `base`
/// (`http://HOST:PORT`): the status line and the headers, as sent.
pub fn visit(base: &str, path: &str) -> String {
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|error| panic!("connecting to {address}: {error}"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The value of the cookie `name` that the answer head `head` sets.
pub fn set_cookie<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(header, _)| header.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, value)| value.trim().split(';').next()?.split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value)
}
