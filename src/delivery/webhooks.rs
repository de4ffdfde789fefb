//! The webhook registry: endpoints with their subscriptions, custom headers, signing
//! secrets and retry schedule, and the admin API in Frontier's shapes (`{"webhook": …}`,
//! `{"webhooks": […]}`). Every change writes an audit record with the caller's identity.

use std::time::Duration;

use crate::sql::Connection;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use url::Url;

use super::secrets::{Keyring, SigningSecret};
use super::sign::Algorithm;
use super::store::{self, Webhook};
use super::{client, headers};
use crate::auth::Admin;
use crate::clock::{self, Millis};
use crate::config::{self, Config};
use crate::error::ApiError;
use crate::events::{Action, NewEvent, Publisher};
use crate::http::{Endpoint, PAGE, Reply};
use crate::ids;
use crate::pagination::{self, PageQuery};
use crate::store::audit;
use crate::store::{Store, WriteTx};

/// How long a rotated-out secret keeps signing unless the request says otherwise.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 1000;
const MAX_HEADERS: usize = 32;
const MAX_SUBSCRIPTIONS: usize = 200;

/// The webhook as the API shows it; `secrets` as `{id, created_at, expires_at}` only.
fn to_json(conn: &Connection, w: &Webhook) -> crate::sql::Result<Value> {
    Ok(shown(w, json!(store::secret_summaries(conn, &w.id)?)))
}

/// The webhook as the API shows it, with `secrets` as given.
fn shown(w: &Webhook, secrets: Value) -> Value {
    json!({
        "id": w.id,
        "url": w.url,
        "description": w.description,
        "subscribed_events": w.subscribed_events,
        "headers": headers::shown(&w.headers),
        "state": w.state,
        "disabled_reason": w.disabled_reason,
        "signature_algorithm": w.signature_algorithm,
        "retry_schedule": w.retry_schedule,
        "failing_since": w.failing_since.map(clock::to_rfc3339),
        "secrets": secrets,
        "created_at": clock::to_rfc3339(w.created_at),
        "updated_at": clock::to_rfc3339(w.updated_at),
    })
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_field", format!("{field}: {message}"))
}

/// Parses and checks an endpoint URL against the delivery policy.
///
/// # Errors
/// 400 `invalid_url` or `url_not_allowed`.
pub fn check_url(raw: &str, cfg: &config::DeliveryConfig) -> Result<Url, ApiError> {
    if raw.len() > MAX_URL_LEN {
        return Err(ApiError::bad_request(
            "invalid_url",
            format!("url is longer than {MAX_URL_LEN} characters"),
        ));
    }
    let url = Url::parse(raw.trim()).map_err(|e| {
        ApiError::bad_request(
            "invalid_url",
            format!("url `{raw}` is not an absolute URL: {e}"),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if cfg.allow_http => {}
        "http" => {
            return Err(ApiError::bad_request(
                "url_not_allowed",
                "url must use https (set delivery.allow_http to allow http:// endpoints)",
            ));
        }
        other => {
            return Err(ApiError::bad_request(
                "invalid_url",
                format!("url scheme `{other}` is not http or https"),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::bad_request("invalid_url", "url has no host"));
    }
    client::literal_ip_allowed(&url, cfg.allow_private_networks)
        .map_err(|m| ApiError::bad_request("url_not_allowed", m))?;
    Ok(url)
}

fn check_subscriptions(list: &[String]) -> Result<(), ApiError> {
    if list.len() > MAX_SUBSCRIPTIONS {
        return Err(ApiError::bad_request(
            "invalid_event_type",
            format!("at most {MAX_SUBSCRIPTIONS} subscribed_events"),
        ));
    }
    for entry in list {
        let ok = match entry.strip_suffix(".*") {
            Some(prefix) => Action::is_valid_prefix(prefix),
            None => Action::parse(entry).is_ok(),
        };
        if !ok {
            return Err(ApiError::bad_request(
                "invalid_event_type",
                format!(
                    "`{entry}` is not an event type (like app.user.created) or a prefix ending in .* (like app.user.*)"
                ),
            ));
        }
    }
    Ok(())
}

/// Header names the service sets itself.
fn is_reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "content-type"
            | "content-length"
            | "host"
            | "x-signature"
            | "user-agent"
            | "transfer-encoding"
            | "connection"
    ) || n.starts_with("webhook-")
        || n.starts_with("x-hookrelay-")
}

fn check_headers(headers: &Map<String, Value>) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(invalid(
            "headers",
            format!("at most {MAX_HEADERS} custom headers"),
        ));
    }
    for (name, value) in headers {
        if is_reserved(name) {
            return Err(ApiError::bad_request(
                "reserved_header",
                format!(
                    "header `{name}` is set by hookrelay and cannot be overridden (Content-Type, Content-Length, Host, X-Signature, webhook-*, X-Hookrelay-*)"
                ),
            ));
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(invalid(
                "headers",
                format!("`{name}` is not a valid header name"),
            ));
        }
        let Some(v) = value.as_str() else {
            return Err(invalid(
                "headers",
                format!("the value of `{name}` must be a string"),
            ));
        };
        if HeaderValue::from_str(v).is_err() {
            return Err(invalid(
                "headers",
                format!("the value of `{name}` is not a valid header value"),
            ));
        }
    }
    Ok(())
}

fn check_state(state: &str) -> Result<(), ApiError> {
    match state {
        "enabled" | "disabled" => Ok(()),
        other => Err(invalid(
            "state",
            format!("`{other}` is not enabled or disabled"),
        )),
    }
}

fn check_schedule(schedule: &[String]) -> Result<(), ApiError> {
    config::parse_retry_schedule(schedule)
        .map(|_| ())
        .map_err(|m| invalid("retry_schedule", m))
}

fn check_description(d: &str) -> Result<(), ApiError> {
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(invalid(
            "description",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(())
}

fn conflict_on_duplicate_url(e: crate::sql::Error) -> ApiError {
    // The id is new, so the url is the only unique key an insert or update can break.
    if e.is_unique_violation() && e.database_message().is_some_and(|m| m.contains("url")) {
        return ApiError::conflict("already_exists", "a webhook with this url already exists");
    }
    ApiError::from(e)
}

/// Seals secret number `seq` of `webhook_id` (before the transaction that stores it).
fn seal_secret(
    keyring: &Keyring,
    webhook_id: &str,
    seq: i64,
    secret: &SigningSecret,
) -> Result<super::secrets::Sealed, ApiError> {
    keyring
        .seal(secret, &format!("{webhook_id}:{seq}"))
        .map_err(ApiError::internal)
}

fn shown_secret(seq: i64, secret: &SigningSecret, now: Millis) -> Value {
    json!({
        "id": seq.to_string(),
        "value": secret.hex(),
        "standard_webhooks": secret.whsec(),
        "created_at": clock::to_rfc3339(now),
        "expires_at": null,
    })
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// `/v1beta1/admin/webhooks…`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    const LIST: &[(&str, &str)] = &[("state", "enabled or disabled"), PAGE[0], PAGE[1]];
    let one = Reply::Json("`{webhook: {...}}`");
    vec![
        Endpoint::new(Method::GET, "/v1beta1/admin/webhooks", "webhooks", "webhooks, newest first (secrets as ids only)", |r| r.to(list))
            .query(LIST)
            .reply(Reply::Json("`{webhooks: [...], next_cursor}`")).keys(&["webhooks", "next_cursor"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/webhooks", "webhooks", "create a webhook; the answer is the only time its secret is shown (hex and `whsec_`)", |r| r.to(create))
            .body(|| webhook_schema(true))
            .reply(one)
            .keys(&["webhook"]),
        Endpoint::new(Method::GET, "/v1beta1/admin/webhooks/{id}", "webhooks", "one webhook", |r| r.to(detail))
            .reply(one)
            .keys(&["webhook"]),
        Endpoint::new(Method::PUT, "/v1beta1/admin/webhooks/{id}", "webhooks", "partial update: only the fields sent change", |r| r.to(update))
            .body(|| webhook_schema(false))
            .reply(one)
            .keys(&["webhook"]),
        Endpoint::new(Method::DELETE, "/v1beta1/admin/webhooks/{id}", "webhooks", "delete it; its pending deliveries become cancelled", |r| r.to(delete))
            .reply(Reply::Json("`{}`")),
        Endpoint::new(Method::POST, "/v1beta1/admin/webhooks/{id}/secrets", "webhooks", "rotate: a new secret, shown once; older ones keep signing until `expires_at`", |r| r.to(rotate))
            .body(|| json!({"type": "object", "additionalProperties": false, "properties": {"overlap": {"type": "string", "examples": ["24h"]}}}))
            .reply(one)
            .keys(&["webhook"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/webhooks/{id}/test", "webhooks", "send a `webhook.test` event to this webhook only", |r| r.to(test))
            .status(202)
            .reply(Reply::Json("`{id, deliveries: 1}`")).keys(&["id", "deliveries"]),
        Endpoint::new(Method::POST, "/v1beta1/admin/webhooks/{id}/recover", "webhooks", "queue its failed deliveries created in the range again", |r| r.to(recover))
            .body(|| json!({"type": "object", "required": ["since"], "additionalProperties": false, "properties": {"since": {"type": "string", "format": "date-time"}, "until": {"type": "string", "format": "date-time"}}}))
            .status(202)
            .reply(Reply::Json("`{recovered: n}`")).keys(&["recovered"]),
    ]
}

fn webhook_schema(create: bool) -> Value {
    let mut s = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "url": {"type": "string", "format": "uri", "examples": ["https://example.com/webhooks"]},
            "description": {"type": "string"},
            "subscribed_events": {"type": "array", "items": {"type": "string"}, "description": "empty = every action; an entry may end in `.*`"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "state": {"type": "string", "enum": ["enabled", "disabled"]},
            "signature_algorithm": {"type": "string", "enum": ["sha256", "sha512_256"]},
            "retry_schedule": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 10}
        }
    });
    if create {
        s["required"] = json!(["url"]);
    }
    s
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    url: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    subscribed_events: Vec<String>,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    signature_algorithm: Option<String>,
    #[serde(default)]
    retry_schedule: Option<Vec<String>>,
}

fn audit_entry<'a>(
    actor: &'a str,
    action: &'a str,
    id: &'a str,
    detail: Value,
) -> audit::Entry<'a> {
    audit::Entry {
        actor,
        action,
        target_type: Some("webhook"),
        target_id: Some(id),
        detail,
    }
}

async fn create(
    Admin(caller): Admin,
    store: web::Data<Store>,
    config: web::Data<Config>,
    keyring: web::Data<Keyring>,
    body: web::Json<CreateBody>,
) -> Result<HttpResponse, ApiError> {
    let b = body.into_inner();
    let url = check_url(&b.url, &config.delivery)?;
    check_description(&b.description)?;
    check_subscriptions(&b.subscribed_events)?;
    check_headers(&b.headers)?;
    let state = b.state.unwrap_or_else(|| "enabled".into());
    check_state(&state)?;
    let algorithm: Algorithm = match b.signature_algorithm.as_deref() {
        Some(a) => a.parse().map_err(|m| invalid("signature_algorithm", m))?,
        None => Algorithm::Sha256,
    };
    if let Some(s) = &b.retry_schedule {
        check_schedule(s)?;
    }
    // Everything but the SQL happens here: the id, the secret, its sealing.
    let id = ids::new_id(ids::WEBHOOK);
    let secret = SigningSecret::generate().map_err(ApiError::internal)?;
    let sealed = seal_secret(&keyring, &id, 1, &secret)?;
    let stored_headers = headers::seal(&keyring, &id, &b.headers).map_err(ApiError::internal)?;
    if let Some((name, _)) = stored_headers
        .iter()
        .find(|(_, v)| v.as_str() == Some(headers::REDACTED))
    {
        return Err(invalid(
            "headers",
            format!("`{name}` is \"[redacted]\": send the header's real value"),
        ));
    }
    let now = clock::now_ms();
    let w = Webhook {
        id,
        url: url.to_string(),
        description: b.description,
        subscribed_events: b.subscribed_events,
        headers: stored_headers,
        state,
        disabled_reason: None,
        signature_algorithm: algorithm,
        retry_schedule: b.retry_schedule,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    let detail = json!({"url": crate::redact::url(&w.url)});
    let stored = w.clone();
    store
        .writer()
        .write(move |tx| {
            store::insert(tx, &stored).map_err(conflict_on_duplicate_url)?;
            store::insert_secret(tx, &stored.id, 1, &sealed, now)?;
            audit::record(
                tx,
                &audit_entry(
                    &caller.identity,
                    "webhook.create",
                    &stored.id,
                    detail.clone(),
                ),
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    let v = shown(&w, json!([shown_secret(1, &secret, now)]));
    Ok(HttpResponse::Ok().json(json!({"webhook": v})))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    state: Option<String>,
    #[serde(flatten)]
    page: PageQuery,
}

async fn list(
    _admin: Admin,
    store: web::Data<Store>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.page.limit()?;
    let before = q.page.cursor();
    let state = pagination::one_of("state", q.state, &["enabled", "disabled"])?;
    let items = store
        .read(move |c| {
            let hooks = store::list(c, state, before, limit + 1)?;
            let mut out = Vec::with_capacity(hooks.len());
            for w in &hooks {
                let mut v = to_json(c, w)?;
                v["last_delivery"] = store::last_for_webhook(c, &w.id)?;
                out.push(v);
            }
            Ok::<_, ApiError>(out)
        })
        .await?;
    let (items, next) = pagination::finish(items, limit, |v| v["id"].as_str().unwrap_or_default());
    Ok(HttpResponse::Ok().json(json!({"webhooks": items, "next_cursor": next})))
}

async fn detail(
    _admin: Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let v = store
        .read(move |c| {
            let w =
                store::get(c, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))?;
            let mut v = to_json(c, &w)?;
            v["last_delivery"] = store::last_for_webhook(c, &w.id)?;
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"webhook": v})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    url: Option<String>,
    description: Option<String>,
    subscribed_events: Option<Vec<String>>,
    headers: Option<Map<String, Value>>,
    state: Option<String>,
    signature_algorithm: Option<String>,
    /// `null` resets to the global schedule; absent leaves it.
    #[serde(default, deserialize_with = "double_option")]
    retry_schedule: Option<Option<Vec<String>>>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<Vec<String>>>, D::Error> {
    Option::<Vec<String>>::deserialize(d).map(Some)
}

async fn update(
    Admin(caller): Admin,
    store: web::Data<Store>,
    config: web::Data<Config>,
    keyring: web::Data<Keyring>,
    id: web::Path<String>,
    body: web::Json<UpdateBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let b = body.into_inner();
    let url = b
        .url
        .as_deref()
        .map(|u| check_url(u, &config.delivery))
        .transpose()?;
    if let Some(d) = &b.description {
        check_description(d)?;
    }
    if let Some(s) = &b.subscribed_events {
        check_subscriptions(s)?;
    }
    if let Some(h) = &b.headers {
        check_headers(h)?;
    }
    if let Some(s) = &b.state {
        check_state(s)?;
    }
    let algorithm: Option<Algorithm> = b
        .signature_algorithm
        .as_deref()
        .map(|a| a.parse().map_err(|m| invalid("signature_algorithm", m)))
        .transpose()?;
    if let Some(Some(s)) = &b.retry_schedule {
        check_schedule(s)?;
    }
    let sealed_headers = b
        .headers
        .as_ref()
        .map(|h| headers::seal(&keyring, &id, h))
        .transpose()
        .map_err(ApiError::internal)?;
    let v = store
        .writer()
        .write(move |tx| {
            let mut w = store::get(tx, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))?;
            let mut changed = Vec::new();
            if let Some(u) = &url {
                w.url = u.to_string();
                changed.push("url");
            }
            if let Some(d) = &b.description {
                w.description.clone_from(d);
                changed.push("description");
            }
            if let Some(s) = &b.subscribed_events {
                w.subscribed_events.clone_from(s);
                changed.push("subscribed_events");
            }
            if let Some(mut h) = sealed_headers.clone() {
                headers::resolve_kept(&mut h, &w.headers).map_err(|name| {
                    invalid("headers", format!("`{name}` is \"[redacted]\" but has no stored value to keep: send its real value"))
                })?;
                w.headers = h;
                changed.push("headers");
            }
            let mut cancelled = 0;
            if let Some(s) = &b.state {
                if s == "enabled" {
                    w.disabled_reason = None;
                } else if w.state != "disabled" {
                    w.disabled_reason = Some(format!("disabled by {}", caller.identity));
                    // Nothing is sent to a disabled webhook; `recover` brings these back.
                    cancelled = store::cancel_pending(tx, &w.id, store::WEBHOOK_DISABLED)?;
                }
                w.state.clone_from(s);
                changed.push("state");
            }
            if let Some(a) = algorithm {
                w.signature_algorithm = a;
                changed.push("signature_algorithm");
            }
            if let Some(s) = &b.retry_schedule {
                w.retry_schedule.clone_from(s);
                changed.push("retry_schedule");
            }
            store::update(tx, &w, clock::now_ms()).map_err(conflict_on_duplicate_url)?;
            let mut detail = json!({"changed": changed});
            if cancelled > 0 {
                detail["cancelled_deliveries"] = json!(cancelled);
            }
            audit::record(tx, &audit_entry(&caller.identity, "webhook.update", &w.id, detail))?;
            let w = store::get(tx, &w.id)?.ok_or_else(|| ApiError::internal("updated webhook vanished"))?;
            Ok::<_, ApiError>(to_json(tx, &w)?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"webhook": v})))
}

async fn delete(
    Admin(caller): Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    store
        .writer()
        .write(move |tx| {
            let w =
                store::get(tx, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))?;
            let cancelled = store::cancel_pending(tx, &w.id, "the webhook was deleted")?;
            store::delete(tx, &w.id)?;
            audit::record(
                tx,
                &audit_entry(
                    &caller.identity,
                    "webhook.delete",
                    &w.id,
                    json!({"url": crate::redact::url(&w.url), "cancelled_deliveries": cancelled}),
                ),
            )?;
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    /// How long the current secrets keep signing, e.g. "1h"; default 24h, "0s" ends them now.
    overlap: Option<String>,
}

async fn rotate(
    Admin(caller): Admin,
    store: web::Data<Store>,
    keyring: web::Data<Keyring>,
    id: web::Path<String>,
    body: Option<web::Json<RotateBody>>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let overlap = match body.and_then(|b| b.into_inner().overlap) {
        Some(o) => humantime::parse_duration(&o)
            .map_err(|e| invalid("overlap", format!("`{o}` is not a duration: {e}")))?,
        None => ROTATION_OVERLAP,
    };
    let secret = SigningSecret::generate().map_err(ApiError::internal)?;
    let keyring = keyring.into_inner();
    let v = store
        .writer()
        .write(move |tx| {
            let w = store::get(tx, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))?;
            let now = clock::now_ms();
            let expires = clock::add(now, overlap);
            let seq = store::expire_secrets(tx, &w.id, expires)?;
            // The secret is bound to its number, known only here: sealed in the transaction.
            let sealed = seal_secret(&keyring, &w.id, seq, &secret)?;
            store::insert_secret(tx, &w.id, seq, &sealed, now)?;
            store::touch(tx, &w.id, now)?;
            audit::record(
                tx,
                &audit_entry(&caller.identity, "webhook.rotate_secret", &w.id, json!({"secret_id": seq.to_string(), "previous_expire_at": clock::to_rfc3339(expires)})),
            )?;
            let mut v = to_json(tx, &w)?;
            if let Some(list) = v["secrets"].as_array_mut()
                && let Some(first) = list.first_mut()
            {
                *first = shown_secret(seq, &secret, now);
            }
            Ok::<_, ApiError>(v)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({"webhook": v})))
}

async fn test(
    Admin(caller): Admin,
    store: web::Data<Store>,
    publisher: web::Data<Publisher>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let w = {
        let id = id.clone();
        store
            .read(move |c| {
                store::get(c, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))
            })
            .await?
    };
    let event = NewEvent::system(
        "webhook.test",
        json!({
            "actor": {"id": caller.identity, "type": "user", "name": caller.identity},
            "target": {"id": w.id, "type": "webhook", "name": crate::redact::url(&w.url)},
            "metadata": {"message": "a test event sent from hookrelay"},
        }),
    )
    .only_to(&w.id);
    let prepared = publisher.prepare(event).await?;
    let publisher = publisher.into_inner();
    let published = store
        .writer()
        .write(move |tx| {
            let published = publisher.store(tx, &prepared)?;
            audit::record(
                tx,
                &audit_entry(
                    &caller.identity,
                    "webhook.test",
                    &w.id,
                    json!({"event_id": published.id}),
                ),
            )?;
            Ok::<_, ApiError>(published)
        })
        .await?;
    Ok(HttpResponse::Accepted()
        .json(json!({"id": published.id, "deliveries": published.deliveries})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    since: String,
    until: Option<String>,
}

async fn recover(
    Admin(caller): Admin,
    store: web::Data<Store>,
    id: web::Path<String>,
    body: web::Json<RecoverBody>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let b = body.into_inner();
    let since = clock::parse_rfc3339(&b.since).map_err(|m| invalid("since", m))?;
    let until = b
        .until
        .as_deref()
        .map(clock::parse_rfc3339)
        .transpose()
        .map_err(|m| invalid("until", m))?;
    let recovered = store
        .writer()
        .write(move |tx| {
            let w =
                store::get(tx, &id)?.ok_or_else(|| ApiError::not_found(format!("webhook {id}")))?;
            let n = store::recover(tx, &w.id, since, until.unwrap_or(i64::MAX))?;
            audit::record(
                tx,
                &audit_entry(
                    &caller.identity,
                    "webhook.recover",
                    &w.id,
                    json!({"since": b.since, "until": b.until, "recovered": n}),
                ),
            )?;
            Ok::<_, ApiError>(n)
        })
        .await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED).json(json!({"recovered": recovered})))
}

/// Disables `webhook_id` with `reason` (auto-disable, an unusable webhook): its pending
/// deliveries are cancelled, and an audit record and a `webhook.disabled` event written, in the
/// caller's transaction. Returns false if it was not enabled.
///
/// # Errors
/// A database error.
pub fn disable(
    tx: &WriteTx<'_>,
    publisher: &Publisher,
    webhook_id: &str,
    reason: &str,
) -> crate::sql::Result<bool> {
    let Some(url) = store::disable(tx, webhook_id, reason, clock::now_ms())? else {
        return Ok(false);
    };
    let cancelled = store::cancel_pending(tx, webhook_id, store::WEBHOOK_DISABLED)?;
    // The URL as events, audit records and logs show it: no userinfo, no query values.
    let url = crate::redact::url(&url);
    audit::record(
        tx,
        &audit_entry(
            "system",
            "webhook.disabled",
            webhook_id,
            json!({"reason": reason, "url": url, "cancelled_deliveries": cancelled}),
        ),
    )?;
    let event = NewEvent::system(
        "webhook.disabled",
        json!({
            "actor": {"id": "hookrelay", "type": "system", "name": "hookrelay"},
            "target": {"id": webhook_id, "type": "webhook", "name": url},
            "metadata": {"reason": reason},
        }),
    );
    publisher.publish_in(tx, event)?;
    tracing::warn!(%webhook_id, %reason, "webhook disabled");
    Ok(true)
}

/// Re-encrypts every stored webhook secret and sensitive header with the current key, in `tx`
/// (`hookrelay keys reencrypt`, which also re-seals task headers). Returns (re-encrypted,
/// already current, unreadable).
///
/// # Errors
/// A database error, or the OS RNG failing.
pub fn reencrypt_all(
    tx: &WriteTx<'_>,
    keyring: &Keyring,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let (mut done, mut current, mut unreadable) = (0, 0, Vec::new());
    for (webhook_id, seq, sealed) in store::all_secrets(tx)? {
        if sealed.key_id == keyring.current_id() {
            current += 1;
            continue;
        }
        let aad = format!("{webhook_id}:{seq}");
        match keyring.open(&sealed, &aad) {
            Ok(secret) => {
                store::reseal_secret(tx, &webhook_id, seq, &keyring.seal(&secret, &aad)?)?;
                done += 1;
            }
            Err(e) => unreadable.push(format!("{webhook_id} secret {seq}: {e}")),
        }
    }
    for (webhook_id, map) in store::all_headers(tx)? {
        let before = headers::key_ids(&map).count();
        match headers::reseal(keyring, &webhook_id, &map) {
            Ok(Some(fresh)) => {
                store::set_headers(tx, &webhook_id, &fresh)?;
                done += before;
            }
            Ok(None) => current += before,
            Err(e) => unreadable.push(format!("{e:#}")),
        }
    }
    Ok((done, current, unreadable))
}

/// The ids of the keys every sealed value in the database was made with (secrets and
/// sensitive headers), for the start-up check that the configured keys can open them.
///
/// # Errors
/// A database error.
pub fn sealed_key_ids(conn: &Connection) -> crate::sql::Result<Vec<String>> {
    let mut ids = store::secret_key_ids(conn)?;
    for (_, map) in store::all_headers(conn)? {
        ids.extend(headers::key_ids(&map));
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_headers() {
        for h in [
            "Content-Type",
            "content-length",
            "Host",
            "X-Signature",
            "webhook-id",
            "Webhook-Signature",
            "X-Hookrelay-Attempt",
        ] {
            assert!(is_reserved(h), "{h}");
        }
        for h in ["Authorization", "X-Webhook-Secret", "X-Api-Key"] {
            assert!(!is_reserved(h), "{h}");
        }
    }
}
