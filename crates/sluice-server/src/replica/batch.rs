//! Check-ins forwarded together: a standby does not pass each agent's
//! check-in on to the leader as a request of its own, but sends those that
//! arrive while earlier ones are on their way as one request to [`PATH`],
//! and hands each agent its own answer back. The leader answers each
//! check-in of a batch through its own router, exactly as if the agent had
//! sent it there (token, bindings, the check-in queue's bound, durability),
//! and all of them in one group commit.
//!
//! Batches form by themselves, as the group commit's do: at most [`LANES`]
//! are on their way at once, and whatever arrived meanwhile goes in the
//! next one (up to [`MAX_BATCH`] check-ins), so a lone check-in waits for
//! nothing and a busy standby makes one request of many. Every check-in
//! still costs the standby its own HTTP request from the agent; what the
//! batch saves is a request and an answer between the replicas, on both
//! sides, for all but one check-in of each batch.
//!
//! A batch proves it comes from a replica with the cluster's forwarding key
//! (as a forwarded request proves its client's address, see
//! [`crate::audit`]), and carries each agent's `Authorization` header, its
//! address and its body; the answers carry each one's status, headers and
//! body. Both are postcard. A leader that does not lead any more answers
//! the batch 503, which every agent of it gets; a leader of an earlier
//! version, which does not know [`PATH`] (404), gets the batch's check-ins
//! forwarded one by one, so that replicas can be upgraded one at a time.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tower::ServiceExt as _;

use super::forward::{self, Forwarder, FORWARDED_BY};
use super::{Replica, Route};
use crate::audit::{FromReplica, Source, FORWARD_KEY};
use crate::config::limits;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Where a leader takes batches of check-ins from the other replicas. It
/// is not part of the API (`/v1/openapi.json`): only a replica, with the
/// cluster's forwarding key, may call it.
pub const PATH: &str = "/internal/v1/checkins";

/// The path of the check-ins a standby batches.
const CHECKIN: &str = "/v1/agent/checkin";

/// How many batches a standby has on their way to the leader at once.
pub const LANES: usize = 4;

/// The most check-ins in one batch.
pub const MAX_BATCH: usize = 128;

/// The largest batch a leader reads: [`MAX_BATCH`] check-ins of the
/// largest size one may have.
pub const MAX_BODY: usize = MAX_BATCH * (limits::CHECKIN + 1024);

/// How many check-ins may wait for a lane before agents wait to hand theirs
/// over (each agent's connection holds at most one anyway).
const WAITING: usize = 4 * MAX_BATCH;

const POSTCARD: HeaderValue = HeaderValue::from_static("application/x-postcard");

/// One agent's check-in, as a batch carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkin {
    authorization: Option<Bytes>,
    source: Option<IpAddr>,
    body: Bytes,
}

impl Checkin {
    /// The request the agent sent, as the leader's router takes it.
    fn into_request(self) -> Request {
        let mut request = Request::new(Body::from(self.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = axum::http::Uri::from_static(CHECKIN);
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(value) = self
            .authorization
            .and_then(|value| HeaderValue::from_maybe_shared(value).ok())
        {
            headers.insert(AUTHORIZATION, value);
        }
        if let Some(address) = self.source {
            request.extensions_mut().insert(Source(address));
        }
        request
    }
}

/// One agent's answer, as a batch's answer carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Answer {
    status: u16,
    headers: Vec<(String, Bytes)>,
    body: Bytes,
}

impl Answer {
    /// The answer of `response`, whose body is read whole (a check-in's
    /// answer is small).
    async fn of(response: Response) -> Answer {
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => Answer::from_parts(&parts, body),
            Err(error) => Answer::error(ApiError::Internal(format!(
                "reading the answer to a check-in: {error}"
            ))),
        }
    }

    /// The answer of `error`: its response's status and headers, and its
    /// body (serialised here, so that no body needs reading).
    fn error(error: ApiError) -> Answer {
        let body = serde_json::to_vec(&error.body())
            .map(Bytes::from)
            .unwrap_or_default();
        let (parts, _) = error.into_response().into_parts();
        Answer::from_parts(&parts, body)
    }

    fn from_parts(parts: &axum::http::response::Parts, body: Bytes) -> Answer {
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| **name != header::CONTENT_LENGTH)
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    Bytes::copy_from_slice(value.as_bytes()),
                )
            })
            .collect();
        Answer {
            status: parts.status.as_u16(),
            headers,
            body,
        }
    }

    /// This answer for each of `count` check-ins.
    fn to_each(&self, count: usize) -> Vec<Response> {
        (0..count).map(|_| self.clone().into_response()).collect()
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name),
                HeaderValue::from_maybe_shared(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// Whether a standby batches `request`: a check-in whose body has a length
/// it may have (any other goes the way of every forwarded request, and the
/// leader answers it what it answers any such request).
pub fn batches(request: &Request) -> bool {
    request.method() == Method::POST
        && request.uri().path() == CHECKIN
        && request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok())
            .is_some_and(|length| length <= limits::CHECKIN)
}

/// A check-in waiting for its batch.
struct Waiting {
    checkin: Checkin,
    reply: oneshot::Sender<Response>,
}

/// A standby's batching of the check-ins it forwards: one queue, and its
/// lanes, for the leader it forwards to now. When the leader changes, the
/// next check-in starts a queue for the new one, so that check-ins never
/// wait behind batches held up by a leader that is gone or paused (those
/// end as forwarded requests to it do).
#[derive(Debug)]
pub struct Batcher {
    current: Mutex<Option<(String, mpsc::Sender<Waiting>)>>,
    sender: Arc<Sender>,
}

impl Batcher {
    /// Batching for the replica `replica`, sending through `forwarder` and
    /// counting batches in `metrics`.
    pub fn new(forwarder: Forwarder, replica: String, metrics: Arc<Metrics>) -> Batcher {
        let sender = Sender {
            forwarder,
            replica,
            metrics,
        };
        Batcher {
            current: Mutex::new(None),
            sender: Arc::new(sender),
        }
    }

    /// The queue of batches to `leader`, started if it is not the current
    /// one.
    fn queue(&self, leader: &str) -> mpsc::Sender<Waiting> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        match &*current {
            Some((to, queue)) if to == leader => queue.clone(),
            _ => {
                let (queue, waiting) = mpsc::channel(WAITING);
                tokio::spawn(run(leader.to_owned(), waiting, Arc::clone(&self.sender)));
                *current = Some((leader.to_owned(), queue.clone()));
                queue
            }
        }
    }

    /// Forwards the check-in `request` to the leader at `leader` in the
    /// next batch and answers what the leader answered it.
    pub async fn forward(&self, leader: &str, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, limits::CHECKIN).await {
            Ok(body) => body,
            Err(error) => {
                return ApiError::bad_request(format!("reading the check-in's body: {error}"))
                    .into_response()
            }
        };
        let (reply, answer) = oneshot::channel();
        let waiting = Waiting {
            checkin: Checkin {
                authorization: parts
                    .headers
                    .get(AUTHORIZATION)
                    .map(|value| Bytes::copy_from_slice(value.as_bytes())),
                source: Source::of(&parts.extensions),
                body,
            },
            reply,
        };
        let lost = || {
            ApiError::Unavailable(format!(
                "forwarding to the leader at {leader} stopped; retry"
            ))
            .into_response()
        };
        if self.queue(leader).send(waiting).await.is_err() {
            return lost();
        }
        answer.await.unwrap_or_else(|_| lost())
    }
}

/// Takes the check-ins waiting for `leader` into batches, as lanes free
/// up; ends once the queue is replaced (the leader changed) and empty.
async fn run(leader: String, mut queue: mpsc::Receiver<Waiting>, sender: Arc<Sender>) {
    let lanes = Arc::new(Semaphore::new(LANES));
    while let Some(first) = queue.recv().await {
        let Ok(lane) = Arc::clone(&lanes).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (sender, leader) = (Arc::clone(&sender), leader.clone());
        tokio::spawn(async move {
            sender.send(&leader, batch).await;
            drop(lane);
        });
    }
}

/// Sends batches to the leader.
#[derive(Debug)]
struct Sender {
    forwarder: Forwarder,
    replica: String,
    metrics: Arc<Metrics>,
}

impl Sender {
    async fn send(&self, leader: &str, batch: Vec<Waiting>) {
        self.metrics.forwarded_batch(batch.len());
        let (checkins, replies): (Vec<Checkin>, Vec<_>) = batch
            .into_iter()
            .map(|waiting| (waiting.checkin, waiting.reply))
            .unzip();
        let answers = match self.exchange(leader, &checkins).await {
            Exchanged::Answers(answers) if answers.len() == replies.len() => answers
                .into_iter()
                .map(IntoResponse::into_response)
                .collect(),
            Exchanged::Answers(answers) => Answer::error(ApiError::Internal(format!(
                "the leader at {leader} answered {} check-ins of a batch of {}",
                answers.len(),
                replies.len()
            )))
            .to_each(replies.len()),
            Exchanged::Everyone(answer) => answer.to_each(replies.len()),
            Exchanged::Unknown => {
                let forwards = checkins.into_iter().map(|checkin| {
                    forward::forward(
                        &self.forwarder,
                        leader,
                        &self.replica,
                        checkin.into_request(),
                    )
                });
                futures_util::future::join_all(forwards).await
            }
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            // An agent that hung up meanwhile needs no answer.
            let _ = reply.send(answer);
        }
    }

    async fn exchange(&self, leader: &str, checkins: &[Checkin]) -> Exchanged {
        let unreachable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%leader, %error, "forwarding check-ins to the leader failed");
            ApiError::Unavailable(format!(
                "this replica does not lead and the leader at {leader} cannot be reached ({error}); retry in a moment"
            ))
        };
        let body = match postcard::to_stdvec(checkins) {
            Ok(body) => body,
            Err(error) => {
                return Exchanged::Everyone(Answer::error(ApiError::Internal(format!(
                    "encoding a batch of check-ins: {error}"
                ))))
            }
        };
        let mut request = Request::new(Body::from(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = match format!("{}{PATH}", leader.trim_end_matches('/')).parse() {
            Ok(uri) => uri,
            Err(error) => return Exchanged::Everyone(Answer::error(unreachable(&error))),
        };
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, POSTCARD);
        if let Ok(id) = HeaderValue::from_str(&self.replica) {
            headers.insert(HeaderName::from_static(FORWARDED_BY), id);
        }
        if let Some(key) = self
            .forwarder
            .key()
            .and_then(|key| HeaderValue::from_str(&key).ok())
        {
            headers.insert(FORWARD_KEY, key);
        }
        let response = match self.forwarder.send(request).await {
            Ok(response) => response,
            Err(error) => return Exchanged::Everyone(Answer::error(unreachable(&error))),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Exchanged::Unknown,
            _ => return Exchanged::Everyone(Answer::of(response).await),
        }
        let body = match axum::body::to_bytes(response.into_body(), usize::MAX).await {
            Ok(body) => body,
            Err(error) => return Exchanged::Everyone(Answer::error(unreachable(&error))),
        };
        match postcard::from_bytes::<Vec<Answer>>(&body) {
            Ok(answers) => Exchanged::Answers(answers),
            Err(error) => Exchanged::Everyone(
                Answer::error(ApiError::Internal(format!(
                    "the leader at {leader} answered a batch of check-ins with what is not one: {error}"
                ))),
            ),
        }
    }
}

/// What came back for a batch.
enum Exchanged {
    /// Each check-in's own answer, in order.
    Answers(Vec<Answer>),
    /// One answer for all of them: the batch itself failed.
    Everyone(Answer),
    /// The leader does not take batches (an earlier version).
    Unknown,
}

/// `POST` [`PATH`]: a leader answers each check-in of a batch a standby
/// sent, as its own router answers it, all at once.
pub async fn answer(State(replica): State<Arc<Replica>>, request: Request) -> Response {
    if request.extensions().get::<FromReplica>().is_none() {
        return ApiError::Forbidden(
            "only the replicas of the cluster send batches of check-ins, with the cluster's forwarding key; agents send theirs to /v1/agent/checkin".to_owned(),
        )
        .into_response();
    }
    let term = match replica.route(true) {
        Route::Here(term) => term,
        Route::Unavailable(why) => return ApiError::Unavailable(why).into_response(),
        Route::Forward(leader) => {
            return ApiError::Unavailable(format!(
                "this replica does not lead ({} does); retry",
                leader.id
            ))
            .into_response()
        }
    };
    let body = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(body) => body,
        Err(error) => {
            return ApiError::bad_request(format!("reading a batch of check-ins: {error}"))
                .into_response()
        }
    };
    let checkins: Vec<Checkin> = match postcard::from_bytes(&body) {
        Ok(checkins) => checkins,
        Err(error) => {
            return ApiError::bad_request(format!("not a batch of check-ins: {error}"))
                .into_response()
        }
    };
    let answers = futures_util::future::join_all(checkins.into_iter().map(|checkin| {
        let router = term.router.clone();
        async move {
            match router.oneshot(checkin.into_request()).await {
                Ok(response) => Answer::of(response).await,
                Err(never) => match never {},
            }
        }
    }))
    .await;
    match postcard::to_stdvec(&answers) {
        Ok(body) => ([(CONTENT_TYPE, POSTCARD)], body).into_response(),
        Err(error) => {
            ApiError::Internal(format!("encoding the answers to a batch: {error}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use axum::http::HeaderMap;
    use axum::routing::post;
    use axum::Router;

    use super::*;
    use crate::audit::FORWARDED_FOR;

    /// How long a test waits for what must happen.
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

    #[test]
    fn an_answer_keeps_its_status_headers_and_body_across_the_wire() {
        let refused = Answer::error(ApiError::TooManyRequests {
            message: "the check-in queue is full".to_owned(),
            retry_after_s: 7,
        });
        let mut bytes = postcard::to_stdvec(&vec![refused]).expect("encoded");
        let answers: Vec<Answer> = postcard::from_bytes(&bytes).expect("decoded");
        let response = answers[0].clone().into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");

        bytes.truncate(bytes.len() / 2);
        assert!(postcard::from_bytes::<Vec<Answer>>(&bytes).is_err());
    }

    /// A leader of an earlier version, which knows only `/v1/agent/checkin`:
    /// it answers each check-in its body, token and client address.
    async fn earlier_leader() -> String {
        async fn echo(headers: HeaderMap, body: Bytes) -> String {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "{} {} {}",
                header("authorization"),
                header(FORWARDED_FOR.as_str()),
                String::from_utf8_lossy(&body)
            )
        }
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a port");
        let address = listener.local_addr().expect("its address");
        let app = Router::new().route(CHECKIN, post(echo));
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{address}")
    }

    fn checkin(token: &str, from: [u8; 4], body: &str) -> Request {
        let mut request = Request::new(Body::from(body.to_owned()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = axum::http::Uri::from_static(CHECKIN);
        let headers = request.headers_mut();
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(token).expect("a header"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        request.extensions_mut().insert(Source(IpAddr::from(from)));
        request
    }

    #[tokio::test]
    async fn a_leader_without_batches_gets_each_check_in_forwarded_alone() {
        let leader = earlier_leader().await;
        let forwarder = forward::client(None, Some("key".into())).expect("a client");
        let metrics = Arc::new(Metrics::new());
        let batcher = Batcher::new(forwarder, "b".to_owned(), Arc::clone(&metrics));
        let agents = (0..20u8).map(|i| {
            let request = checkin(
                &format!("Bearer t{i}"),
                [127, 0, 0, i + 2],
                &format!("{{\"host\":\"h{i}\"}}"),
            );
            assert!(batches(&request));
            let (batcher, leader) = (&batcher, &leader);
            async move {
                let response = batcher.forward(leader, request).await;
                assert_eq!(response.status(), StatusCode::OK);
                let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                    .await
                    .expect("a body");
                String::from_utf8(body.to_vec()).expect("text")
            }
        });
        let answers = futures_util::future::join_all(agents).await;
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(
                answer,
                &format!("Bearer t{i} 127.0.0.{} {{\"host\":\"h{i}\"}}", i + 2)
            );
        }
        let text = metrics.render(&crate::metrics::Gauges::default());
        assert!(
            text.contains("sluice_forwarded_checkin_batch_size_sum 20.0"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn batches_held_up_by_a_paused_leader_do_not_hold_up_its_successor() {
        // A leader that was paused: its port takes connections, and answers
        // nothing.
        let paused = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a port");
        let paused_at = format!("http://{}", paused.local_addr().expect("its address"));
        let successor = earlier_leader().await;
        let forwarder = forward::client(None, Some("key".into())).expect("a client");
        let batcher = Arc::new(Batcher::new(
            forwarder,
            "b".to_owned(),
            Arc::new(Metrics::new()),
        ));
        let held: Vec<_> = (0..(LANES * 2))
            .map(|i| {
                let (batcher, paused_at) = (Arc::clone(&batcher), paused_at.clone());
                let request = checkin("Bearer t", [127, 0, 0, 1], &format!("{{\"held\":{i}}}"));
                tokio::spawn(async move { batcher.forward(&paused_at, request).await })
            })
            .collect();
        let answered = tokio::time::timeout(
            DEADLINE,
            batcher.forward(&successor, checkin("Bearer t", [127, 0, 0, 1], "{}")),
        )
        .await
        .expect("the successor answers while batches to the paused leader hang");
        assert_eq!(answered.status(), StatusCode::OK);
        assert!(held.iter().all(|task| !task.is_finished()));
    }

    #[test]
    fn only_check_ins_of_a_known_and_allowed_length_are_batched() {
        let mut request = checkin("Bearer t", [127, 0, 0, 1], "{}");
        assert!(batches(&request));
        request.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(limits::CHECKIN + 1),
        );
        assert!(!batches(&request), "too large: the leader says so");
        request.headers_mut().remove(header::CONTENT_LENGTH);
        assert!(!batches(&request), "chunked");
        let mut other = checkin("Bearer t", [127, 0, 0, 1], "{}");
        *other.uri_mut() = axum::http::Uri::from_static("/v1/agent/enroll");
        assert!(!batches(&other));
    }
}
