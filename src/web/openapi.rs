//! The route table and the OpenAPI document made from it.
//!
//! Every HTTP route is declared once, as an [`Endpoint`]: method, path, handler, and what the
//! document says about it (summary, auth, query parameters, body, success status). [`mount`]
//! registers the endpoints with actix-web and [`document`] builds the OpenAPI 3.1 description
//! served at `/openapi.json` from the same list, so a route cannot exist without being
//! described. `docs/openapi.json` is a copy that a test keeps current.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::http::Method;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError as _, web};
use serde_json::{Value, json};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder,
    Required, ResponseBuilder, ResponsesBuilder, Schema, tag::TagBuilder,
};

use crate::config::Config;
use crate::error::ApiError;
use crate::http::{Auth, Endpoint, Reply};

/// Every endpoint of the service, in mounting order.
#[must_use]
pub fn endpoints(config: &Config) -> Vec<Endpoint> {
    let mut all = Vec::new();
    all.extend(crate::web::endpoints());
    all.extend(crate::front::endpoints(config));
    all.extend(crate::inbound::routes::endpoints());
    all.extend(crate::sources::endpoints());
    all.extend(crate::events::routes::endpoints());
    all.extend(crate::delivery::endpoints());
    all.extend(crate::tasks::routes::endpoints());
    all.extend(crate::jobs::routes::endpoints());
    all.extend(crate::cron::routes::endpoints());
    all.extend(crate::ops::endpoints());
    all.extend(crate::web::metrics::endpoints());
    all.push(
        Endpoint::new(
            Method::GET,
            "/openapi.json",
            "meta",
            "this OpenAPI 3.1 document",
            |r| r.to(openapi_json),
        )
        .auth(Auth::Public)
        .reply(Reply::Json("the OpenAPI document")),
    );
    all
}

/// Mounts `endpoints`: one resource per path (so other methods get 405 `method_not_allowed` with
/// `Allow`).
pub fn mount(cfg: &mut web::ServiceConfig, endpoints: &[Endpoint]) {
    let mut paths: Vec<&'static str> = Vec::new();
    for e in endpoints {
        if !paths.contains(&e.path) {
            paths.push(e.path);
        }
    }
    for path in paths {
        let mut methods: Vec<&str> = endpoints
            .iter()
            .filter(|e| e.path == path)
            .map(|e| e.method.as_str())
            .collect();
        // HEAD works wherever GET does (uptime checkers, `curl -I`): the GET handler runs and
        // the server sends its headers without the body.
        let has_get = methods.contains(&"GET");
        if has_get && !methods.contains(&"HEAD") {
            methods.push("HEAD");
        }
        let mut r = resource(path, &methods.join(", "));
        for e in endpoints.iter().filter(|e| e.path == path) {
            r = r.route((e.handler)(web::route().method(e.method.clone())));
            if e.method == Method::GET {
                r = r.route((e.handler)(web::route().method(Method::HEAD)));
            }
        }
        cfg.service(r);
    }
}

/// A resource at `path` that answers 405 `method_not_allowed`, with `Allow: <allow>`, for
/// methods it has no route for, instead of falling through to the app's 404. The route table
/// (`openapi::mount`) builds every resource with it.
#[must_use]
pub fn resource(path: &str, allow: &str) -> actix_web::Resource {
    let allow: std::sync::Arc<str> = allow.into();
    web::resource(path).default_service(web::to(move |req: HttpRequest| {
        let allow = std::sync::Arc::clone(&allow);
        async move { method_not_allowed(&req, &allow) }
    }))
}

fn method_not_allowed(req: &HttpRequest, allow: &str) -> HttpResponse {
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; allowed: {allow}",
            req.method(),
            req.path()
        ),
    )
    .error_response();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(allow) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// The document for the built-in defaults (Front enabled), as pretty JSON with a final newline —
/// what `/openapi.json` serves and `docs/openapi.json` holds.
///
/// # Panics
/// Never in practice: the document is plain data that always serializes.
pub fn document_json() -> &'static str {
    DOCUMENT.get_or_init(|| {
        let config = crate::config::from_toml_str("").unwrap_or_else(|_| unreachable_defaults());
        let mut s = document(&endpoints(&config))
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        s.push('\n');
        s
    })
}

#[cold]
fn unreachable_defaults() -> Config {
    panic!("the built-in default configuration is valid (a unit test checks it)")
}

async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}

/// `{file:.+}` → `{file}`: the OpenAPI form of an actix pattern.
fn openapi_path(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_param = false;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push(c);
            }
            ':' if in_param => skipping = true,
            '}' if in_param => {
                in_param = false;
                skipping = false;
                out.push(c);
            }
            _ if skipping => {}
            _ => out.push(c),
        }
    }
    out
}

fn path_params(pattern: &str) -> Vec<String> {
    openapi_path(pattern)
        .split('{')
        .skip(1)
        .filter_map(|p| p.split('}').next().map(str::to_string))
        .collect()
}

/// A JSON Schema (written with `json!`) as utoipa's type. A unit test checks that every schema
/// of the route table survives this unchanged.
fn schema(v: Value) -> Schema {
    serde_json::from_value(v).unwrap_or_default()
}

/// Any JSON value (utoipa has no `{}` schema).
fn any_value() -> Value {
    json!({"type": ["object", "array", "string", "number", "boolean", "null"]})
}

fn http_method(m: &Method) -> HttpMethod {
    match *m {
        Method::POST => HttpMethod::Post,
        Method::PUT => HttpMethod::Put,
        Method::DELETE => HttpMethod::Delete,
        Method::PATCH => HttpMethod::Patch,
        Method::HEAD => HttpMethod::Head,
        Method::OPTIONS => HttpMethod::Options,
        _ => HttpMethod::Get,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        302 => "Found",
        _ => "Success",
    }
}

/// The error statuses any operation may answer, each with the error body.
const ERRORS: [(u16, &str); 10] = [
    (
        400,
        "invalid input: `invalid_json` (malformed JSON), `invalid_payload` (JSON of the wrong shape), `invalid_query`, `invalid_field`, `reserved_action`, …",
    ),
    (
        401,
        "`unauthorized` (no or wrong token), or a Front signature that does not verify",
    ),
    (
        403,
        "`forbidden`: a publish token on an admin route; `cross_origin`: a state-changing request from another origin while `auth.identity_header` is set",
    ),
    (404, "`not_found`"),
    (405, "`method_not_allowed`"),
    (
        409,
        "a conflict: `already_exists`, `already_pending`, `invalid_state`, `cron_running`, …",
    ),
    (
        408,
        "`request_timeout`: the body did not arrive within server.body_timeout (the connection is closed)",
    ),
    (413, "`payload_too_large` (over server.max_body_bytes)"),
    (
        415,
        "`unsupported_media_type`: send `Content-Type: application/json`",
    ),
    (
        503,
        "`storage_busy` / `storage_unavailable` (retry), `front_not_configured`, `not_ready`",
    ),
];

/// The error body every failure has (`{"error": {"code", "message"}}`).
fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "snake_case, stable"},
                "message": {"type": "string", "description": "a sentence a person can act on"}
            }
        }}
    })
}

/// Builds the OpenAPI 3.1 document of `endpoints`.
#[must_use]
pub fn document(endpoints: &[Endpoint]) -> OpenApi {
    let mut by_path: BTreeMap<String, Vec<&Endpoint>> = BTreeMap::new();
    for e in endpoints {
        by_path.entry(openapi_path(e.path)).or_default().push(e);
    }
    let mut paths = PathsBuilder::new();
    let mut tags: Vec<&'static str> = Vec::new();
    for (path, eps) in &by_path {
        let mut item: Option<PathItem> = None;
        for e in eps {
            if !tags.contains(&e.tag) {
                tags.push(e.tag);
            }
            let op = operation(e, path);
            item = Some(match item {
                None => PathItem::new(http_method(&e.method), op),
                Some(mut it) => {
                    it.merge_operations(PathItem::new(http_method(&e.method), op));
                    it
                }
            });
        }
        if let Some(item) = item {
            paths = paths.path(path.clone(), item);
        }
    }
    let bearer = |what: &str| {
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(what.to_string()))
                .build(),
        )
    };
    let components = ComponentsBuilder::new()
        .schema("Error", schema(error_schema()))
        .security_scheme(
            "admin_token",
            bearer(
                "auth.admin_token (or an identity from auth.identity_header in auth.admin_emails)",
            ),
        )
        .security_scheme(
            "publish_token",
            bearer("one of auth.publish_tokens: may only publish events"),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("hookrelay")
                .version(crate::VERSION)
                .description(Some(
                    "A webhook hub in one binary: Front ingress, durable jobs, signed \
                     Frontier-style outbound webhooks with retries, and the operations API. \
                     Every error is `{\"error\": {\"code\", \"message\"}}`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .tags(Some(
            tags.into_iter().map(|t| TagBuilder::new().name(t).build()),
        ))
        .build()
}

fn operation(e: &Endpoint, path: &str) -> utoipa::openapi::path::Operation {
    let mut params: Vec<Parameter> = path_params(path)
        .into_iter()
        .map(|name| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(schema(json!({"type": "string"}))))
                .build()
        })
        .collect();
    params.extend(e.query.iter().map(|(name, description)| {
        ParameterBuilder::new()
            .name(*name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(*description))
            .schema(Some(schema(json!({"type": "string"}))))
            .build()
    }));
    let header = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Header)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(schema(json!({"type": "string"}))))
            .build()
    };
    match e.auth {
        Auth::FrontApp => {
            params.push(header(
                "x-front-signature",
                "base64 HMAC-SHA256(front.webhook_secret, `<timestamp>:<body>`)",
            ));
            params.push(header(
                "x-front-request-timestamp",
                "ms since the epoch, within front.timestamp_tolerance",
            ));
        }
        Auth::FrontRule => params.push(header(
            "x-front-signature",
            "base64 HMAC-SHA1(front.rule_webhook_secret, body)",
        )),
        Auth::Public | Auth::Admin | Auth::Publish | Auth::Source => {}
    }

    let success = match e.reply {
        Reply::Json(what) => {
            let properties: serde_json::Map<String, Value> = e
                .keys
                .iter()
                .map(|k| ((*k).to_string(), any_value()))
                .collect();
            ResponseBuilder::new()
                .description(if what.is_empty() {
                    reason(e.status)
                } else {
                    what
                })
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(schema(json!({
                            "type": "object",
                            "required": e.keys,
                            "properties": properties,
                        }))))
                        .build(),
                )
                .build()
        }
        Reply::Text(what) => ResponseBuilder::new()
            .description(what)
            .content(
                "text/plain",
                ContentBuilder::new()
                    .schema(Some(schema(json!({"type": "string"}))))
                    .build(),
            )
            .build(),
        Reply::Html => ResponseBuilder::new()
            .description("the admin page")
            .content(
                "text/html",
                ContentBuilder::new()
                    .schema(Some(schema(json!({"type": "string"}))))
                    .build(),
            )
            .build(),
        Reply::File => ResponseBuilder::new()
            .description("a file of the admin page, with its content type")
            .build(),
        Reply::Redirect => ResponseBuilder::new()
            .description("redirect to /admin")
            .build(),
    };
    let error = |what: &str| {
        ResponseBuilder::new()
            .description(what)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Error")))
                    .build(),
            )
            .build()
    };
    let mut op = OperationBuilder::new()
        .summary(Some(e.summary))
        .operation_id(Some(format!(
            "{}_{}",
            e.method.as_str().to_ascii_lowercase(),
            path.trim_matches('/')
                .replace(['/', '-', '.'], "_")
                .replace(['{', '}'], "")
        )))
        .tag(e.tag)
        .parameters(Some(params))
        .responses({
            let mut responses =
                ResponsesBuilder::new().response(e.status.to_string(), success.clone());
            if let Some(also) = e.also {
                responses = responses.response(also.to_string(), success);
            }
            if matches!(e.reply, Reply::Html | Reply::File) {
                responses = responses.response(
                    "304",
                    ResponseBuilder::new()
                        .description("not modified (ETag)")
                        .build(),
                );
            }
            for (status, what) in ERRORS {
                responses = responses.response(status.to_string(), error(what));
            }
            responses.build()
        });
    if let Some(body) = e.body {
        op = op.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema(body()))).build(),
                )
                .build(),
        ));
    }
    match e.auth {
        Auth::Admin => {
            op = op.security(SecurityRequirement::new(
                "admin_token",
                Vec::<String>::new(),
            ))
        }
        Auth::Publish => {
            op = op
                .security(SecurityRequirement::new(
                    "admin_token",
                    Vec::<String>::new(),
                ))
                .security(SecurityRequirement::new(
                    "publish_token",
                    Vec::<String>::new(),
                ));
        }
        Auth::Public | Auth::FrontApp | Auth::FrontRule | Auth::Source => {}
    }
    op.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_survives_the_conversion_unchanged() {
        let config = crate::config::from_toml_str("").expect("defaults");
        let mut checked = 0;
        for e in endpoints(&config) {
            let mut wanted = vec![any_value()];
            if let Some(body) = e.body {
                wanted.push(body());
            }
            for v in wanted {
                let back = serde_json::to_value(schema(v.clone())).expect("serialize");
                assert_eq!(back, v, "{} {}", e.method, e.path);
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked}");
        let doc: Value = serde_json::from_str(document_json()).expect("json");
        let healthz = &doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert_eq!(
            healthz["required"],
            json!(["status", "name", "version"]),
            "{healthz}"
        );
    }

    #[test]
    fn actix_patterns_become_openapi_paths() {
        assert_eq!(openapi_path("/admin/{file:.+}"), "/admin/{file}");
        assert_eq!(
            openapi_path("/v1beta1/admin/jobs/{id}/retry"),
            "/v1beta1/admin/jobs/{id}/retry"
        );
        assert_eq!(path_params("/a/{x}/b/{y:\\d+}"), vec!["x", "y"]);
    }
}
