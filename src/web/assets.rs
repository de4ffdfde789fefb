//! The admin page: files from `static/`, embedded in the binary and served from that allowlist
//! with explicit content types, an ETag, and a strict Content-Security-Policy (no inline script
//! or style, no framing).

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use rust_embed::RustEmbed;

use crate::error::ApiError;
use crate::http::{Auth, Endpoint, Reply};

#[derive(RustEmbed)]
#[folder = "static/"]
struct Static;

/// The CSP every page response carries.
pub const CSP: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `/`, `/admin` and `/admin/{file}`.
#[must_use]
pub fn endpoints() -> Vec<Endpoint> {
    let page = |path, summary, handler| {
        Endpoint::new(Method::GET, path, "admin page", summary, handler)
            .auth(Auth::Public)
            .reply(Reply::Html)
    };
    vec![
        Endpoint::new(Method::GET, "/", "admin page", "redirects to /admin", |r| {
            r.to(root)
        })
        .auth(Auth::Public)
        .status(302)
        .reply(Reply::Redirect),
        page(
            "/admin",
            "the admin page (signs in with the admin token)",
            |r| r.to(index),
        ),
        page("/admin/", "the admin page", |r| r.to(index)),
        Endpoint::new(
            Method::GET,
            "/admin/{file:.+}",
            "admin page",
            "a file of the admin page, embedded in the binary",
            |r| r.to(file),
        )
        .auth(Auth::Public)
        .reply(Reply::File),
    ]
}

async fn root() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/admin"))
        .finish()
}

async fn index(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    serve(&req, &name)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, ApiError> {
    let asset = Static::get(name).ok_or_else(|| ApiError::not_found(format!("/admin/{name}")))?;
    let etag = format!("\"{}\"", hex::encode(&asset.metadata.sha256_hash()[..12]));
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    if not_modified {
        return Ok(res.finish());
    }
    Ok(res
        .insert_header((header::CONTENT_TYPE, content_type(name)))
        .body(asset.data.into_owned()))
}
