//! Request extractors that fail with [`ApiError`], so that a malformed body,
//! query or path is answered in the API's error format (400, or 413 for a
//! body over the route's limit) rather than axum's plain text.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Json<T>, ApiError> {
        let bytes = body_bytes(request, state).await?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses a JSON body read already (as [`Body`]), failing as [`Json`] does.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Tracking the path costs on every value; it is needed only to say
    // where a body that does not parse went wrong, so only such a body is
    // read a second time, with it.
    match serde_json::from_slice(bytes) {
        Ok(value) => Ok(value),
        Err(_) => {
            serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes))
                .map_err(json_error)
        }
    }
}

/// A UTF-8 text body (a plan in YAML or JSON).
#[derive(Debug, Clone)]
pub struct Text(pub String);

impl<S: Send + Sync> FromRequest<S> for Text {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Text, ApiError> {
        let bytes = body_bytes(request, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(Text)
            .map_err(|error| {
                ApiError::bad_request(format!(
                    "the body is not UTF-8 text (invalid byte at offset {}); send the plan as UTF-8 YAML or JSON",
                    error.utf8_error().valid_up_to()
                ))
            })
    }
}

/// The raw body bytes, within the route's limit.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Body, ApiError> {
        body_bytes(request, state).await.map(Body)
    }
}

async fn body_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(body_error)
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(
            "the request body is larger than this endpoint accepts; send less (check-ins take 256 KiB, plans 1 MiB, imports 512 MiB, anything else 64 KiB)".to_owned(),
        )
    } else {
        ApiError::bad_request(format!("could not read the request body: {rejection}"))
    }
}

/// Turns a JSON error into a 400 naming where it is and which field: the
/// path to the value at fault (`components.c.version`), or the field serde
/// names (a missing or unknown one) inside the object at that path.
pub fn json_error(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let text = error.into_inner().to_string();
    let field = match (field_of(&text), path.as_str()) {
        (Some(field), ".") => Some(field),
        // An unknown field is in the path already, a missing one is not.
        (Some(field), path) if path == field || path.ends_with(&format!(".{field}")) => {
            Some(path.to_owned())
        }
        (Some(field), path) => Some(format!("{path}.{field}")),
        (None, ".") => None,
        (None, path) => Some(path.to_owned()),
    };
    let message = format!("invalid JSON body: {text}");
    match field {
        Some(field) => ApiError::bad_field(field, message),
        None => ApiError::bad_request(message),
    }
}

/// The field serde names in `missing field `x`` or `unknown field `x``.
fn field_of(message: &str) -> Option<String> {
    for prefix in ["missing field `", "unknown field `", "duplicate field `"] {
        if let Some(rest) = message.split(prefix).nth(1) {
            return rest.split('`').next().map(str::to_owned);
        }
    }
    None
}

/// A query string.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Query<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| {
                let text = rejection.body_text();
                let field = field_of(&text);
                let message = format!("invalid query string: {text}");
                match field {
                    Some(field) => ApiError::bad_field(field, message),
                    None => ApiError::bad_request(message),
                }
            })
    }
}

/// Path parameters.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Path<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_field_serde_names() {
        assert_eq!(
            field_of("missing field `host` at line 1 column 2").as_deref(),
            Some("host")
        );
        assert_eq!(field_of("expected value at line 1 column 1"), None);
    }
}
