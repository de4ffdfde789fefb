//! How routes are declared and what every handler may take: the route-declaration type
//! ([`Endpoint`], mounted and documented from one list by the web layer) and the raw-body
//! extractor ([`Body`]) for handlers that verify bytes.
//!
//! A primitive: it knows actix-web and the config, nothing of the capabilities.

use actix_web::Route;
use actix_web::dev::Payload;
use actix_web::http::{Method, StatusCode};
use actix_web::web::{Bytes, Data};
use serde_json::Value;

use crate::error::ApiError;

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    /// `Authorization: Bearer <admin token>` (or the identity header).
    Admin,
    /// The admin token or a publish token.
    Publish,
    /// A Front signature over the body (`x-front-signature`, …).
    FrontApp,
    FrontRule,
    /// Signed as the inbound source's preset requires (a provider's own signature headers).
    Source,
}

/// What an endpoint answers on success.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    /// A JSON object; the text names its main fields.
    Json(&'static str),
    Text(&'static str),
    Html,
    /// A static file of the admin page (its own content type).
    File,
    Redirect,
}

/// One route: how it is served and how it is described.
#[derive(Clone)]
pub struct Endpoint {
    pub method: Method,
    /// actix-web pattern (`/v1beta1/admin/jobs/{id}`, `/admin/{file:.+}`).
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// `(name, description)` of each query parameter.
    pub query: &'static [(&'static str, &'static str)],
    /// JSON Schema of the request body, if it takes one.
    pub body: Option<fn() -> Value>,
    pub status: u16,
    /// Another success status with the same body (200 for an idempotent repeat of a 201/202).
    pub also: Option<u16>,
    pub reply: Reply,
    /// Top-level fields every success body has (the document requires them).
    pub keys: &'static [&'static str],
    /// Attaches the handler: `|r| r.to(handler)`.
    pub handler: fn(Route) -> Route,
}

/// `limit` and `cursor`, as every list takes them.
pub const PAGE: [(&str, &str); 2] = [
    ("limit", "page size, 1–500 (default 50)"),
    ("cursor", "`next_cursor` of the previous page"),
];

impl Endpoint {
    /// An admin endpoint answering 200 with JSON.
    #[must_use]
    pub fn new(
        method: Method,
        path: &'static str,
        tag: &'static str,
        summary: &'static str,
        handler: fn(Route) -> Route,
    ) -> Self {
        Self {
            method,
            path,
            tag,
            summary,
            auth: Auth::Admin,
            query: &[],
            body: None,
            status: 200,
            also: None,
            reply: Reply::Json(""),
            keys: &[],
            handler,
        }
    }

    #[must_use]
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    #[must_use]
    pub fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }

    #[must_use]
    pub fn body(mut self, schema: fn() -> Value) -> Self {
        self.body = Some(schema);
        self
    }

    #[must_use]
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    #[must_use]
    pub fn keys(mut self, keys: &'static [&'static str]) -> Self {
        self.keys = keys;
        self
    }

    #[must_use]
    pub fn also(mut self, status: u16) -> Self {
        self.also = Some(status);
        self
    }

    #[must_use]
    pub fn reply(mut self, reply: Reply) -> Self {
        self.reply = reply;
        self
    }
}

/// A request body read whole, at most `server.max_body_bytes`, for handlers that verify raw
/// bytes (webhook ingress).
///
/// Unlike collecting into a buffer that doubles as it grows (which holds up to twice what
/// arrived while the body is unfinished), it keeps the chunks as they arrived and joins them
/// once the body is complete, so an unfinished body holds about what was sent; an announced
/// `Content-Length` over the limit is refused before anything is read.
#[derive(Debug, Clone)]
pub struct Body(pub Bytes);

impl std::ops::Deref for Body {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.0
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

impl actix_web::FromRequest for Body {
    type Error = ApiError;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &actix_web::HttpRequest, payload: &mut Payload) -> Self::Future {
        use futures_util::StreamExt as _;
        let limit = req
            .app_data::<Data<crate::config::Config>>()
            .map_or(1 << 20, |c| c.server.max_body_bytes);
        let encoded = req
            .headers()
            .get(actix_web::http::header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let announced = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut stream = actix_web::dev::Decompress::from_headers(payload.take(), req.headers());
        Box::pin(async move {
            if !encoded && announced.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let mut chunks: Vec<Bytes> = Vec::new();
            let mut total = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| crate::error::payload_error(&e, limit))?;
                total += chunk.len();
                if total > limit {
                    return Err(too_large(limit));
                }
                chunks.push(chunk);
            }
            if chunks.len() == 1 {
                return Ok(Self(chunks.swap_remove(0)));
            }
            let mut buf = actix_web::web::BytesMut::with_capacity(total);
            for c in &chunks {
                buf.extend_from_slice(c);
            }
            Ok(Self(buf.freeze()))
        })
    }
}
