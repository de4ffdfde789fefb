//! The Front ingress hot path: verify the signature on the raw bytes, answer the
//! challenge, parse only the envelope, store the raw event and enqueue its processing job in
//! one group-committed transaction, answer 200 after the commit.
//!
//! It must never do anything else: no outbound HTTP, no fetch, no fan-out, no parsing beyond the
//! few envelope fields it stores.

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::signature::{self, SignatureError};
use crate::clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::inbound::ingress::{self, Ingress};
use crate::inbound::{Channel, NewInbound};
use crate::jobs::Handoff;
use crate::store::Store;

/// Headers kept with each stored event.
const KEPT_HEADERS: [&str; 5] = [
    "content-type",
    "user-agent",
    "x-front-request-timestamp",
    "x-front-signature",
    "x-forwarded-for",
];

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn kept_headers(headers: &HeaderMap) -> Value {
    let mut m = Map::new();
    for name in KEPT_HEADERS {
        if let Some(v) = header(headers, name) {
            m.insert(name.to_string(), Value::String(v.to_string()));
        }
    }
    Value::Object(m)
}

fn not_configured(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "front_not_configured",
        format!("{what} is not set, so Front webhooks cannot be verified; set it and restart"),
    )
}

fn refused(e: SignatureError) -> ApiError {
    match e {
        SignatureError::Invalid => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "x-front-signature is missing or does not match the body",
        ),
        SignatureError::TimestampOutOfRange => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "timestamp_out_of_range",
            "x-front-request-timestamp is missing or outside front.timestamp_tolerance",
        ),
    }
}

fn invalid_payload(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_payload", message)
}

/// The headers whose values a refused request's record keeps.
const SIGNATURE_HEADERS: &[&str] = &["x-front-signature", "x-front-request-timestamp"];

/// What a verified request comes to: an answer of its own (a challenge) or an event to store.
enum Verified {
    Answer(HttpResponse),
    Store(NewInbound),
}

/// Runs `check` on a request's body and stores what it verified; a refusal at any step (the
/// body itself included) is recorded with the rejected requests.
async fn receive(
    req: &HttpRequest,
    body: Result<crate::http::Body, ApiError>,
    store: &Store,
    handoff: &web::Data<Handoff>,
    ingress: &Ingress,
    check: impl FnOnce(&[u8]) -> Result<Verified, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let refuse = |e: ApiError, body: &[u8]| {
        ingress::refused(
            ingress,
            req,
            super::SOURCE,
            true,
            e,
            SIGNATURE_HEADERS,
            body,
        )
    };
    let body = body.map_err(|e| refuse(e, b""))?;
    match check(&body).map_err(|e| refuse(e, &body))? {
        Verified::Answer(answer) => Ok(answer),
        Verified::Store(event) => {
            ingress::accept(store, handoff, ingress, event, super::PROCESSING).await
        }
    }
}

/// The only fields the hot path reads; serde skips everything else without building it.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    authorization: Option<Authorization>,
    payload: Option<EventRef>,
}

#[derive(Deserialize)]
struct Authorization {
    id: Option<String>,
}

#[derive(Deserialize)]
struct EventRef {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `POST /webhooks/front` — application webhooks.
///
/// # Errors
/// 503 `front_not_configured`, 401 `invalid_signature` / `timestamp_out_of_range`, 400
/// `invalid_payload`, 503 `storage_busy` / `storage_unavailable`.
#[tracing::instrument(skip_all)]
pub async fn app_webhook(
    req: HttpRequest,
    body: Result<crate::http::Body, ApiError>,
    config: web::Data<Config>,
    store: web::Data<Store>,
    handoff: web::Data<Handoff>,
    ingress: web::Data<Ingress>,
) -> Result<HttpResponse, ApiError> {
    receive(&req, body, &store, &handoff, &ingress, |body| {
        verify_app_webhook(&req, body, &config)
    })
    .await
}

fn verify_app_webhook(
    req: &HttpRequest,
    body: &[u8],
    config: &Config,
) -> Result<Verified, ApiError> {
    let secret = config
        .front
        .webhook_secret
        .as_ref()
        .ok_or_else(|| not_configured("front.webhook_secret (or FRONT_WEBHOOK_SECRET)"))?;
    let headers = req.headers();
    signature::verify_app(
        secret.expose(),
        header(headers, "x-front-signature"),
        header(headers, "x-front-request-timestamp"),
        body,
        clock::now_ms(),
        config.front.timestamp_tolerance,
    )
    .map_err(refused)?;
    if let Some(challenge) = header(headers, "x-front-challenge") {
        crate::counters::ingress("front", "challenge");
        return Ok(Verified::Answer(
            HttpResponse::Ok().json(json!({"challenge": challenge})),
        ));
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| invalid_payload(format!("the body is not a Front webhook envelope: {e}")))?;
    let event_id = envelope
        .payload
        .and_then(|p| p.id)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid_payload("the envelope has no payload.id"))?;
    let event = NewInbound {
        source: super::SOURCE,
        channel: Channel::App,
        external_id: event_id,
        body_key: None,
        event_type: envelope.kind.unwrap_or_else(|| "unknown".into()),
        company_id: envelope.authorization.and_then(|a| a.id),
        raw_body: body.to_vec(),
        headers: kept_headers(headers).to_string(),
    };
    Ok(Verified::Store(event))
}

/// `POST /webhooks/front/rules` — legacy rule webhooks: the body is the event itself.
///
/// # Errors
/// As [`app_webhook`], without the timestamp check.
#[tracing::instrument(skip_all)]
pub async fn rule_webhook(
    req: HttpRequest,
    body: Result<crate::http::Body, ApiError>,
    config: web::Data<Config>,
    store: web::Data<Store>,
    handoff: web::Data<Handoff>,
    ingress: web::Data<Ingress>,
) -> Result<HttpResponse, ApiError> {
    receive(&req, body, &store, &handoff, &ingress, |body| {
        verify_rule_webhook(&req, body, &config)
    })
    .await
}

fn verify_rule_webhook(
    req: &HttpRequest,
    body: &[u8],
    config: &Config,
) -> Result<Verified, ApiError> {
    let secret = config
        .front
        .rule_webhook_secret
        .as_ref()
        .ok_or_else(|| not_configured("front.rule_webhook_secret"))?;
    let headers = req.headers();
    signature::verify_rule(secret.expose(), header(headers, "x-front-signature"), body)
        .map_err(refused)?;
    let event: EventRef = serde_json::from_slice(body)
        .map_err(|e| invalid_payload(format!("the body is not a Front event: {e}")))?;
    let event_id = event
        .id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| invalid_payload("the event has no id"))?;
    let event = NewInbound {
        source: super::SOURCE,
        channel: Channel::Rule,
        external_id: event_id,
        body_key: None,
        event_type: super::webhook_type(event.kind.as_deref().unwrap_or("unknown")).to_string(),
        company_id: None,
        raw_body: body.to_vec(),
        headers: kept_headers(headers).to_string(),
    };
    Ok(Verified::Store(event))
}
