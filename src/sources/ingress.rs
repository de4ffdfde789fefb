//! `POST /webhooks/in/<name>`, the hot path of every source: verify the raw bytes by the
//! source's scheme, answer a handshake, read the few values the row needs (type and id) in one
//! pass that builds nothing else, store the raw body and a `source.process` job in one group
//! commit, answer. Nothing else: no parsing of the rest, no publishing, no outbound call.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::extract::{self, Pointer};
use super::scheme::{self, Handshake, Refusal, TypeRule};
use super::{PROCESSING, Source, Sources};
use crate::clock;
use crate::config::Locator;
use crate::error::ApiError;
use crate::inbound::ingress::{self, Ingress};
use crate::inbound::{Channel, NewInbound};
use crate::jobs::Handoff;
use crate::store::Store;

/// A header's value; for Standard Webhooks signed under the `svix-` names (no
/// `webhook-signature`, a `svix-signature`), the `svix-` twin of a `webhook-` name, as the
/// signature was checked: the id deduplicated by is always the one that was signed.
fn header<'a>(req: &'a HttpRequest, source: &Source, name: &str) -> Option<&'a str> {
    let get = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let svix = source.scheme.svix_alias
        && get("webhook-signature").is_none()
        && get("svix-signature").is_some();
    match name.strip_prefix("webhook-") {
        Some(rest) if svix => get(&format!("svix-{rest}")),
        _ => get(name),
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "source_not_found",
        format!(
            "no enabled source is named `{}`",
            name.chars().take(64).collect::<String>()
        ),
    )
}

fn refusal(r: Refusal) -> ApiError {
    match r {
        Refusal::InvalidSignature(m) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "invalid_signature", m)
        }
        Refusal::TimestampOutOfRange(m) => {
            ApiError::new(StatusCode::UNAUTHORIZED, "timestamp_out_of_range", m)
        }
        Refusal::InvalidPayload(m) => ApiError::bad_request("invalid_payload", m),
    }
}

fn is_form(req: &HttpRequest) -> bool {
    req.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        })
}

/// What a verified request comes to.
enum Verified {
    Answer(HttpResponse),
    Store(NewInbound),
}

/// `POST /webhooks/in/{name}`.
///
/// # Errors
/// 404 `source_not_found`, 401 `invalid_signature` / `timestamp_out_of_range`, 413, 400
/// `invalid_payload` (where the scheme reads the body: Linear's timestamp, handshakes), 503
/// `storage_busy` / `storage_unavailable`. Every refusal is recorded with the rejected requests.
#[tracing::instrument(skip_all, fields(source = %name))]
pub async fn receive(
    req: HttpRequest,
    name: web::Path<String>,
    body: Result<crate::http::Body, ApiError>,
    sources: web::Data<Sources>,
    store: web::Data<Store>,
    handoff: web::Data<Handoff>,
    ingress: web::Data<Ingress>,
) -> Result<HttpResponse, ApiError> {
    let found = sources.get(&name);
    let Some(source) = found.filter(|s| s.config.enabled) else {
        // A disabled source's refusals are its own; other names share one sender.
        let (sender, known) = found.map_or((ingress::UNKNOWN, false), |s| (s.name, true));
        let body = body.as_deref().map_or(&[][..], |b| &b[..]);
        return Err(ingress::refused(
            &ingress,
            &req,
            sender,
            known,
            not_found(&name),
            &[],
            body,
        ));
    };
    let refuse = |e: ApiError, body: &[u8]| {
        ingress::refused(
            &ingress,
            &req,
            source.name,
            true,
            e,
            &source.scheme.signature_headers(),
            body,
        )
    };
    let body = body.map_err(|e| refuse(e, b""))?;
    match verify(&req, source, &body).map_err(|e| refuse(e, &body))? {
        Verified::Answer(answer) => {
            crate::counters::ingress(source.name, "handshake");
            Ok(answer)
        }
        Verified::Store(event) => {
            ingress::accept(&store, &handoff, &ingress, event, PROCESSING).await
        }
    }
}

fn verify(req: &HttpRequest, source: &Source, body: &[u8]) -> Result<Verified, ApiError> {
    let secrets: Vec<&str> = source.config.secrets.iter().map(|s| s.expose()).collect();
    scheme::verify(
        &source.scheme,
        &secrets,
        req.headers(),
        body,
        clock::now_ms(),
        source.config.tolerance,
    )
    .map_err(refusal)?;

    // Every pointer the row needs, in one pass: the handshake's, the type's, the id's (worked
    // out once at start: `Source::pointers`).
    let handshake = source.scheme.handshake;
    let wanted = &source.pointers;
    let first_body_pointer = source.first_body_pointer;
    let type_locators: Vec<&Locator> = match &source.scheme.event_type {
        TypeRule::First(ls) => ls.iter().collect(),
        TypeRule::Joined(a, b) => vec![a, b],
    };
    let refs: Vec<&Pointer> = wanted.iter().collect();
    // The body values the row needs, read in one pass, in the order of `wanted`.
    let values = if wanted.is_empty() {
        Vec::new()
    } else if is_form(req) {
        extract::form(body, &refs)
    } else {
        match extract::json(body, &refs) {
            Ok(values) => values,
            Err(e) if handshake == Handshake::Discord => {
                return Err(ApiError::bad_request(
                    "invalid_payload",
                    format!("the body is not JSON: {e}"),
                ));
            }
            Err(_) => vec![None; refs.len()],
        }
    };

    match handshake {
        Handshake::Slack if values[0].as_deref() == Some("url_verification") => {
            let challenge = values[1].clone().ok_or_else(|| {
                ApiError::bad_request("invalid_payload", "a url_verification without a challenge")
            })?;
            return Ok(Verified::Answer(
                HttpResponse::Ok().json(json!({"challenge": challenge})),
            ));
        }
        Handshake::Discord if values[2].is_none() => match values[0].as_deref() {
            Some("1") => {
                return Ok(Verified::Answer(
                    HttpResponse::Ok().json(json!({"type": 1})),
                ));
            }
            Some("0") => return Ok(Verified::Answer(HttpResponse::NoContent().finish())),
            _ => {}
        },
        _ => {}
    }

    // The values of the locators, in the order they were asked.
    let mut body_values = values[first_body_pointer..].iter();
    let mut value_of = |l: &Locator| -> Option<String> {
        match l {
            Locator::Pointer(_) => body_values.next().cloned().flatten(),
            Locator::Header(h) => header(req, source, h).map(str::to_string),
        }
        .filter(|v| !v.is_empty())
    };
    let type_values: Vec<Option<String>> = type_locators.iter().map(|l| value_of(l)).collect();
    let ids: Vec<(&Locator, Option<String>)> =
        source.scheme.id.iter().map(|l| (l, value_of(l))).collect();
    let (id, id_from) = ids
        .into_iter()
        .find_map(|(l, v)| v.map(|v| (Some(v), Some(l))))
        .unwrap_or((None, None));
    let event_type = match &source.scheme.event_type {
        TypeRule::First(_) => type_values.into_iter().flatten().next().unwrap_or_default(),
        TypeRule::Joined(..) => match (&type_values[0], &type_values[1]) {
            (Some(a), Some(b)) => format!("{a}.{b}"),
            (Some(a), None) => a.clone(),
            (None, Some(b)) => b.clone(),
            (None, None) => String::new(),
        },
    };
    let body_hash = || hex::encode(Sha256::digest(body));
    // An id from a header the signature does not cover can be changed by whoever captured a
    // request: the body (with its type) is remembered too, so such a replay is a duplicate.
    let body_key = match id_from {
        Some(Locator::Header(h)) if !source.scheme.signs_header(h) => {
            let mut hash = Sha256::new();
            hash.update(event_type.as_bytes());
            hash.update(b"\n");
            hash.update(body);
            Some(format!("body:{}", hex::encode(hash.finalize())))
        }
        _ => None,
    };
    let external_id = id.unwrap_or_else(|| format!("sha256:{}", body_hash()));

    let mut kept = Map::new();
    for name in &source.kept_headers {
        if let Some(v) = req
            .headers()
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
        {
            kept.insert(name.clone(), Value::String(v.to_string()));
        }
    }
    Ok(Verified::Store(NewInbound {
        source: source.name,
        channel: Channel::Source,
        external_id,
        body_key,
        event_type,
        company_id: None,
        raw_body: body.to_vec(),
        headers: Value::Object(kept).to_string(),
    }))
}
