//! The one error shape of the HTTP API: `{"error": {"code": "snake_case", "message": "…"}}`.
//!
//! Two tiers: client errors carry a stable `code` and a message a person can act on; anything
//! unexpected is logged with its full context and answered as an opaque 500. Malformed JSON,
//! queries and paths, unknown routes, wrong methods and oversized bodies all come out in the same
//! shape (see [`json_config`], [`query_config`], [`path_config`], [`rewrite_bare_errors`]).

use std::borrow::Cow;
use std::fmt;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::ServiceResponse;
use actix_web::error::{JsonPayloadError, PathError, PayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::ErrorHandlerResponse;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;

/// An error and its sources as one line, `a: b: c`, skipping a source that repeats its parent's
/// text (reqwest and hyper often do).
#[must_use]
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.contains(&s) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// An error answered to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// A client-facing error with a stable code.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 `not_found` for the named thing.
    pub fn not_found(what: impl fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} was not found"),
        )
    }

    /// 409 with the given code.
    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 500 `internal_error`; the cause is logged here with its whole chain and not shown.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %format!("{cause:#}"), "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }

    /// Adds `Retry-After: <secs>` to the response.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// The stable error code.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message shown to the client.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after_secs {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(json!({"error": {"code": self.code, "message": self.message}}))
    }
}

/// Maps a body-reading failure to the API shape (413 for oversized bodies).
pub fn payload_error(e: &PayloadError, limit: usize) -> ApiError {
    match e {
        PayloadError::Overflow => too_large(limit),
        other => ApiError::bad_request(
            "invalid_body",
            format!("the request body could not be read: {other}"),
        ),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body is larger than the limit of {limit} bytes"),
    )
}

/// `JsonConfig` whose errors use the API shape: 413 over `limit`, 415 for a wrong content type,
/// 400 `invalid_payload` for valid JSON of the wrong shape (missing, unknown or mistyped
/// fields), 400 `invalid_json` otherwise (with serde's position and reason).
#[must_use]
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req: &HttpRequest| {
            let api = match &err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => too_large(limit),
                JsonPayloadError::ContentType => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with `Content-Type: application/json`",
                ),
                // Valid JSON of the wrong shape (a missing or unknown field, a wrong type) is
                // not malformed JSON: say which field, under the code for a bad payload.
                JsonPayloadError::Deserialize(e) if e.is_data() => ApiError::bad_request(
                    "invalid_payload",
                    format!("the JSON body does not have the expected fields: {e}"),
                ),
                JsonPayloadError::Deserialize(e) => ApiError::bad_request(
                    "invalid_json",
                    format!("the body is not valid JSON: {e}"),
                ),
                JsonPayloadError::Payload(p) => payload_error(p, limit),
                other => ApiError::bad_request(
                    "invalid_json",
                    format!("the JSON body is not valid: {other}"),
                ),
            };
            api.into()
        })
}

/// `QueryConfig` whose errors use the API shape (400 `invalid_query`).
#[must_use]
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err: QueryPayloadError, _req| {
        ApiError::bad_request(
            "invalid_query",
            format!("the query string is not valid: {err}"),
        )
        .into()
    })
}

/// `PathConfig` whose errors use the API shape (404: a path that does not parse names nothing).
#[must_use]
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err: PathError, _req| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such resource: {err}"),
        )
        .into()
    })
}

/// The app's default service: 404 `not_found` for every unknown route.
///
/// # Errors
/// Always: that is its purpose.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}

/// `ErrorHandlers` hook: turns error responses that are not already JSON (actix's bare 405, 413 from
/// the payload extractor, …) into the API shape, keeping the status.
///
/// # Errors
/// Never; the signature is the one `ErrorHandlers` requires.
pub fn rewrite_bare_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!(
                "{} is not allowed on {}",
                res.request().method(),
                res.request().path()
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "the request body is too large".to_string(),
        ),
        StatusCode::NOT_FOUND => (
            "not_found",
            format!("no route for {}", res.request().path()),
        ),
        s if s.is_server_error() => (
            "internal_error",
            "an internal error occurred; it has been logged".to_string(),
        ),
        s => (
            "bad_request",
            format!(
                "the request was refused ({})",
                s.canonical_reason().unwrap_or("error")
            ),
        ),
    };
    let (req, mut old) = res.into_parts();
    let allow = old.headers_mut().remove(header::ALLOW).next();
    let mut new = HttpResponse::build(status);
    if let Some(allow) = allow {
        new.insert_header((header::ALLOW, allow));
    }
    let body = json!({"error": {"code": code, "message": message}}).to_string();
    let res = new
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(body);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, res).map_into_right_body::<B>(),
    ))
}
