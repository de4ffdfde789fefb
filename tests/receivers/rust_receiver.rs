//! A hookrelay receiver in Rust (actix-web): verifies X-Signature and the Standard Webhooks
//! headers on the raw body, then parses it.
//! Dependencies: actix-web 4, hmac 0.13, sha2 0.11, hex 0.4, base64 0.22, serde_json 1.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderMap;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const TOLERANCE_SECS: u64 = 5 * 60;

/// The webhook's secret, from its two forms: the 64 hex chars and `whsec_…`.
pub struct Secret {
    key: Vec<u8>,
    whsec_key: Vec<u8>,
}

impl Secret {
    pub fn new(hex_secret: &str, whsec: &str) -> Option<Self> {
        Some(Self {
            key: hex::decode(hex_secret).ok()?,
            whsec_key: BASE64.decode(whsec.strip_prefix("whsec_")?).ok()?,
        })
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Checks both signatures of a delivery (`now` in Unix seconds); returns the id of the
/// X-Signature secret that matched.
pub fn verify(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<String, &'static str> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    // X-Signature: "<secret id>=<hex HMAC-SHA256(secret, body)>", several comma-separated while
    // a secret is being rotated. verify_slice compares in constant time.
    let secret_id = header("x-signature")
        .split(',')
        .find_map(|entry| {
            let (id, sig) = entry.trim().split_once('=')?;
            let sig = hex::decode(sig).ok()?;
            let mac = hmac_sha256(&secret.key, &[body]);
            mac.verify_slice(&sig).is_ok().then(|| id.to_string())
        })
        .ok_or("no x-signature entry matches")?;

    // webhook-signature: "v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>",
    // several space-separated while a secret is being rotated.
    let (msg_id, timestamp) = (header("webhook-id"), header("webhook-timestamp"));
    let signatures = header("webhook-signature");
    let ts = match timestamp.parse::<u64>() {
        Ok(ts) if !msg_id.is_empty() && !signatures.is_empty() => ts,
        _ => return Err("missing webhook-* headers"),
    };
    if now.abs_diff(ts) > TOLERANCE_SECS {
        return Err("webhook-timestamp is too far from now");
    }
    let signed_prefix = format!("{msg_id}.{timestamp}.");
    let matches = signatures.split(' ').any(|entry| {
        let Some(("v1", sig)) = entry.split_once(',') else {
            return false;
        };
        let Ok(sig) = BASE64.decode(sig) else {
            return false;
        };
        let mac = hmac_sha256(&secret.whsec_key, &[signed_prefix.as_bytes(), body]);
        mac.verify_slice(&sig).is_ok()
    });
    if matches {
        Ok(secret_id)
    } else {
        Err("no webhook-signature matches")
    }
}

/// `POST /webhooks/hookrelay`. `web::Bytes` is the raw body, exactly as sent: parsing and
/// re-serializing first could change it.
async fn webhook(req: HttpRequest, body: web::Bytes, secret: web::Data<Secret>) -> HttpResponse {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let secret_id = match verify(&secret, req.headers(), &body, now) {
        Ok(id) => id,
        Err(why) => return HttpResponse::Unauthorized().json(json!({"error": why})),
    };
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().json(json!({"error": "body is not JSON"}));
    };
    // Deliveries are at least once: deduplicate on webhook-id (= event["id"]) before acting.
    println!("verified {} {}", event["id"], event["action"]);
    HttpResponse::Ok().json(json!({
        "verified": ["x-signature", "webhook-signature"],
        "secret_id": secret_id,
        "webhook_id": req.headers().get("webhook-id").and_then(|v| v.to_str().ok()),
        "action": event["action"],
        "target": event["data"]["target"]["name"],
    }))
}

/// Serves the receiver on `listener`; await (or spawn) the returned server from your `main`.
pub fn serve(
    listener: std::net::TcpListener,
    secret: Secret,
) -> std::io::Result<actix_web::dev::Server> {
    let secret = web::Data::new(secret);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(secret.clone())
            .route("/webhooks/hookrelay", web::post().to(webhook))
    })
    .listen(listener)?
    .workers(1)
    .run();
    Ok(server)
}
