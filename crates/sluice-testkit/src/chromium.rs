//! Headless Chromium for the dashboard's browser tests: a `chromedriver`
//! on a free port ([`Driver`], killed on drop), Chromium sessions through
//! it (WebDriver, `fantoccini`), and the dashboard's sign-in form
//! ([`sign_in`]).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`; `scripts/test` installs them).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

use crate::{wait_for, DEADLINE};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process, killed on drop.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it listens.
    pub async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("finding a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting {CHROMEDRIVER} ({error}); install Debian's chromium-driver")
            });
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("chromedriver to listen", DEADLINE, || async move {
            TcpStream::connect_timeout(&address, Duration::from_millis(200))
                .ok()
                .map(drop)
        })
        .await;
        Driver {
            child,
            url: format!("http://{address}"),
        }
    }

    /// A new headless Chromium session, 1280×1000.
    pub async fn browser(&self) -> Client {
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal");
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("starting a Chromium session through chromedriver")
    }
}

/// Opens `url`; the dashboard sends the browser to its sign-in page; signs
/// in with `token` and waits to be back at `url`.
pub async fn sign_in(browser: &Client, url: &str, token: &str) {
    browser.goto(url).await.expect("opening the link");
    let field = browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("token"))
        .await
        .expect("the sign-in page asks for a token");
    field.send_keys(token).await.expect("typing the token");
    browser
        .find(Locator::Id("signin"))
        .await
        .expect("the sign-in button")
        .click()
        .await
        .expect("signing in");
    let expected = url.to_owned();
    let browser = browser.clone();
    wait_for("the browser to come back to the link", DEADLINE, || {
        let (browser, expected) = (browser.clone(), expected.clone());
        async move {
            let now = browser.current_url().await.ok()?;
            (now.as_str() == expected).then_some(())
        }
    })
    .await;
}
