//! The dashboard's stylesheet and script, embedded in the binary and served
//! under names that carry a hash of their content (`dash.3f2a9c01b7.css`):
//! a new build changes the name, so browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use super::DashError;
use crate::auth::hash_secret;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The hashed name it is served under.
    pub name: String,
    pub content_type: &'static str,
    pub body: &'static str,
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, body: &'static str) -> Asset {
        let hash = hash_secret(body);
        Asset {
            name: format!("{stem}.{}.{extension}", &hash[..10]),
            content_type,
            body,
        }
    }

    /// The URL of the asset.
    pub fn href(&self) -> String {
        format!("/static/{}", self.name)
    }
}

/// The stylesheet.
pub static CSS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "dash",
        "css",
        "text/css; charset=utf-8",
        include_str!("../../static/dash.css"),
    )
});

/// The script.
pub static JS: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new(
        "dash",
        "js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/dash.js"),
    )
});

/// `GET /static/{file}`: an asset by its hashed name.
pub async fn serve(Path(file): Path<String>) -> Result<Response, DashError> {
    let asset = [&*CSS, &*JS]
        .into_iter()
        .find(|asset| asset.name == file)
        .ok_or_else(|| {
            DashError::NotFound(format!(
                "no asset {file:?}; this server serves {} and {}",
                CSS.name, JS.name
            ))
        })?;
    Ok((
        [
            (CONTENT_TYPE, asset.content_type),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        asset.body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_content_hash() {
        assert!(CSS.name.starts_with("dash.") && CSS.name.ends_with(".css"));
        assert_eq!(CSS.name.len(), "dash..css".len() + 10);
        assert_ne!(CSS.name, JS.name);
        assert_eq!(JS.href(), format!("/static/{}", JS.name));
    }
}
