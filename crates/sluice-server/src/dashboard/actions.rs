//! The dashboard's POST forms: sign-in, sign-out, the rollout actions and
//! the freeze. Each checks the session's CSRF token, then calls the very
//! function behind the API's endpoint (`POST /v1/rollouts/{id}/{action}`,
//! `PUT`/`DELETE /v1/freeze`) with the signed-in token as the caller, so the
//! role checks, the reason rule, durability and the event log's actor are
//! the API's. The outcome is shown once on the page the form came from.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sluice_api::admin::Role;
use sluice_api::rollout::{Action, Reason};
use sluice_store::Write;

use super::session::{self, Flash, User};
use super::{pages, DashError, Dashboard};
use crate::auth::{hash_secret, Need};
use crate::error::ApiError;
use crate::routes::{admin, rollouts};
use crate::vocabulary;

/// The sign-in form.
#[derive(Debug, Deserialize)]
pub struct SigninForm {
    token: String,
    #[serde(default)]
    next: String,
    /// Must equal the sign-in cookie set with the form.
    #[serde(default)]
    pairing: String,
}

/// `POST /signin`: a viewer, operator or admin token opens a session.
pub async fn signin(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<SigninForm>,
) -> Result<Response, DashError> {
    let next = session::safe_next(Some(&form.next));
    let paired = session::cookie(&headers, session::SIGNIN_COOKIE).is_some_and(|cookie| {
        session::constant_time_eq(cookie.as_bytes(), form.pairing.as_bytes())
    });
    if !paired {
        return pages::signin_form(
            dash.app.https(),
            &next,
            "this sign-in form has expired (or cookies are off); enter the token again",
            StatusCode::FORBIDDEN,
        );
    }
    let secret = form.token.trim();
    let found = dash
        .app
        .tokens()
        .find(secret, dash.app.store())
        .await
        .map_err(|error| DashError::Unavailable(format!("checking the token: {error}")))?;
    let token = match found {
        Some(token) if matches!(token.role, Role::Agent | Role::Enroll) => {
            return pages::signin_form(
                dash.app.https(),
                &next,
                "token: agent and enrollment tokens cannot sign in; use a viewer, operator or admin token (sluice token create --role viewer)",
                StatusCode::FORBIDDEN,
            )
        }
        Some(token) if token.check_usable(dash.app.now()).is_err() => {
            return pages::signin_form(
                dash.app.https(),
                &next,
                "token: this token has expired or was revoked; ask an admin for a new one",
                StatusCode::UNAUTHORIZED,
            )
        }
        Some(token) => token,
        None => {
            return pages::signin_form(
                dash.app.https(),
                &next,
                "token: unknown token; use the admin token from <data-dir>/admin.token or one made with sluice token create",
                StatusCode::UNAUTHORIZED,
            )
        }
    };
    // Stored before the cookie is handed out, so that the session outlives
    // a restart or a change of leader; sessions expired meanwhile go.
    let (id, record) = session::new_session(&hash_secret(secret), dash.app.now())?;
    let ((), pending) = dash.app.change(|_, now, writes| {
        writes.push(Write::SessionsExpired(now));
        writes.push(Write::Session(record.clone()));
    });
    pending.durable().await?;
    dash.app
        .sessions()
        .insert(&record, Arc::clone(&token), dash.app.now());
    tracing::info!(actor = %token.actor, "dashboard sign-in");
    let cookies = AppendHeaders([
        (
            SET_COOKIE,
            session::set_cookie(
                session::COOKIE_NAME,
                &id,
                session::LIFETIME,
                dash.app.https(),
            ),
        ),
        (
            SET_COOKIE,
            session::set_cookie(session::SIGNIN_COOKIE, "", Duration::ZERO, dash.app.https()),
        ),
    ]);
    Ok((cookies, Redirect::to(&next)).into_response())
}

/// A form with nothing but its CSRF token (sign-out).
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /signout`: ends the session.
pub async fn signout(
    State(dash): State<Dashboard>,
    user: User,
    Form(form): Form<CsrfForm>,
) -> Result<Response, DashError> {
    user.check_csrf(&form.csrf)?;
    // Ended in the store before the answer: a restart does not bring it back.
    let hash = dash.app.sessions().remove(&user.session);
    let ((), pending) = dash
        .app
        .change(|_, _, writes| writes.push(Write::SessionEnded(hash)));
    pending.durable().await?;
    let cookie = session::set_cookie(session::COOKIE_NAME, "", Duration::ZERO, dash.app.https());
    Ok(([(SET_COOKIE, cookie)], Redirect::to("/signin")).into_response())
}

/// The rollout actions' form.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// The page to go back to.
    #[serde(default)]
    back: String,
}

fn parse_action(name: &str) -> Result<Action, DashError> {
    name.parse()
        .map_err(|error| DashError::NotFound(format!("action: {error}")))
}

/// After an action: back to the form's page with the outcome, or a page
/// for refusals that are no user error (role, CSRF, storage).
fn outcome(
    dash: &Dashboard,
    user: &User,
    back: &str,
    result: Result<String, ApiError>,
) -> Result<Response, DashError> {
    let flash = match result {
        Ok(text) => Flash { error: false, text },
        Err(error @ (ApiError::BadRequest { .. } | ApiError::Conflict(_))) => Flash {
            error: true,
            text: error.to_string(),
        },
        Err(error) => return Err(error.into()),
    };
    dash.app.sessions().flash(&user.session, flash);
    Ok(Redirect::to(back).into_response())
}

/// `POST /rollouts/{id}/act/{action}`: an operator action with a reason.
pub async fn act(
    State(dash): State<Dashboard>,
    user: User,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Result<Response, DashError> {
    user.check_csrf(&form.csrf)?;
    user.caller.require(Need::Operate)?;
    let action = parse_action(&action)?;
    let back = session::safe_next(Some(&form.back));
    let caller = user.caller.clone();
    let result = rollouts::act(
        dash.app.clone(),
        caller,
        id.clone(),
        action,
        Reason {
            reason: form.reason,
        },
    )
    .await
    .map(|summary| {
        format!(
            "{id}: {} — now {}",
            vocabulary::action(action).name(),
            summary.0.state
        )
    });
    outcome(&dash, &user, &back, result)
}

/// The freeze form on the overview.
#[derive(Debug, Deserialize)]
pub struct FreezeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// `on` or `off`.
    #[serde(default)]
    set: String,
}

/// `POST /freeze`: the fleet-wide freeze on or off (admins).
pub async fn freeze(
    State(dash): State<Dashboard>,
    user: User,
    Form(form): Form<FreezeForm>,
) -> Result<Response, DashError> {
    user.check_csrf(&form.csrf)?;
    user.caller.require(Need::Admin)?;
    let on = match form.set.as_str() {
        "on" => true,
        "off" => false,
        other => {
            return Err(DashError::BadRequest(format!(
                "set: {other:?} is neither on nor off"
            )))
        }
    };
    let result = admin::set_freeze(
        dash.app.clone(),
        user.caller.clone(),
        on,
        Reason {
            reason: form.reason,
        },
    )
    .await
    .map(|view| {
        if view.0.frozen {
            "the fleet is frozen: every rollout holds".to_owned()
        } else {
            "the freeze is lifted: rollouts carry on".to_owned()
        }
    });
    outcome(&dash, &user, "/", result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_named_as_in_the_api() {
        for (name, action) in [
            ("pause", Action::Pause),
            ("resume", Action::Resume),
            ("rollback", Action::Rollback),
            ("approve", Action::Approve),
        ] {
            assert_eq!(parse_action(name), Ok(action));
        }
        assert!(
            matches!(parse_action("explode"), Err(DashError::NotFound(m)) if m.starts_with("action:"))
        );
    }
}
