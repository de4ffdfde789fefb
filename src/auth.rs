//! Who is calling: the admin token, publish tokens, or a trusted identity header.
//!
//! Handlers ask for [`Admin`] or [`Publisher`] as an extractor; a missing or wrong token is 401
//! `unauthorized`, a publish token on an admin route 403 `forbidden`. Tokens are compared through
//! their SHA-256 digests in constant time, so neither content nor length leaks through timing.

use std::collections::HashSet;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderName};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, Secret};
use crate::error::ApiError;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// Only `POST /v1beta1/events`.
    Publisher,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Recorded in the audit log as the actor: `admin` for the admin token, `publish:<n>` for
    /// the n-th publish token (1-based), or the identity header's value when that header is what
    /// authenticated the request.
    pub identity: String,
    pub role: Role,
    /// What publish idempotency ids are scoped to: `admin`, or a stable digest of the publish
    /// token (so reordering `auth.publish_tokens` keeps each publisher's ids its own).
    pub scope: String,
    /// Authenticated by the identity header (a proxy's cookie), not a bearer token.
    pub by_identity_header: bool,
}

/// The credentials the server accepts, built once at start.
pub struct Authenticator {
    admin_digest: [u8; 32],
    publish_digests: Vec<[u8; 32]>,
    identity_header: Option<HeaderName>,
    admin_emails: HashSet<String>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Authenticator {
    /// Builds the authenticator. `admin_token` is the configured or generated token.
    #[must_use]
    pub fn new(cfg: &AuthConfig, admin_token: &Secret) -> Self {
        Self {
            admin_digest: digest(admin_token.expose()),
            publish_digests: cfg
                .publish_tokens
                .iter()
                .map(|t| digest(t.expose()))
                .collect(),
            identity_header: cfg
                .identity_header
                .as_deref()
                .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
            admin_emails: cfg
                .admin_emails
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Identifies the caller of `req`. A bearer token, when sent, decides alone; the identity
    /// header is only looked at for requests without one.
    ///
    /// # Errors
    /// 401 `unauthorized` when no accepted credential is present.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        if let Some(token) = bearer(req) {
            let d = digest(token);
            if bool::from(d.ct_eq(&self.admin_digest)) {
                return Ok(Caller {
                    identity: "admin".into(),
                    role: Role::Admin,
                    scope: "admin".into(),
                    by_identity_header: false,
                });
            }
            // Compare with every token, so timing says nothing about which one matched.
            let mut matched = None;
            for (i, p) in self.publish_digests.iter().enumerate() {
                if bool::from(d.ct_eq(p)) {
                    matched = Some(i);
                }
            }
            return match matched {
                Some(i) => Ok(Caller {
                    identity: format!("publish:{}", i + 1),
                    role: Role::Publisher,
                    scope: format!("publish:{}", hex::encode(&d[..8])),
                    by_identity_header: false,
                }),
                None => Err(unauthorized("the bearer token is not valid")),
            };
        }
        let identity = self
            .identity_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        match identity {
            Some(id) if self.admin_emails.contains(&id.to_ascii_lowercase()) => Ok(Caller {
                identity: id.to_string(),
                role: Role::Admin,
                scope: "admin".into(),
                by_identity_header: true,
            }),
            _ => Err(unauthorized("send `Authorization: Bearer <token>`")),
        }
    }

    /// With `auth.identity_header` set, a proxy may authenticate the browser by cookie, so a
    /// hostile page could make the browser send state-changing requests. Those are refused
    /// when they come from another origin (403 `cross_origin`), and their body must be JSON
    /// (415), which a cross-site form cannot send.
    ///
    /// # Errors
    /// 403 `cross_origin`, 415 `unsupported_media_type`.
    pub fn check_same_origin(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.identity_header.is_none()
            || matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        {
            return Ok(());
        }
        let headers = req.headers();
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let cross_site =
            text("sec-fetch-site").is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
        if let Some(origin) = text("origin") {
            let origin_host = url::Url::parse(origin).ok().and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                })
            });
            let matches = |host: Option<&str>| {
                host.zip(origin_host.as_deref())
                    .is_some_and(|(h, o)| h.eq_ignore_ascii_case(o))
            };
            if !(matches(text("host")) || matches(text("x-forwarded-host"))) {
                return Err(cross_origin(&format!(
                    "its Origin ({origin}) is not this host"
                )));
            }
        } else if cross_site {
            return Err(cross_origin("the browser says it is a cross-site request"));
        }
        let has_body = text("content-length").is_some_and(|n| n.trim() != "0")
            || headers.contains_key(header::TRANSFER_ENCODING);
        let content_type = text("content-type");
        let is_json = content_type.is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
        if (has_body || content_type.is_some()) && !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        Ok(())
    }
}

fn cross_origin(why: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        format!(
            "this state-changing request was refused because {why}; send it from the admin page or with a bearer token, without an Origin of another site"
        ),
    )
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

fn authenticator(req: &HttpRequest) -> Result<&Authenticator, ApiError> {
    req.app_data::<web::Data<Authenticator>>()
        .map(|d| d.get_ref())
        .ok_or_else(|| ApiError::internal("the authenticator is not registered"))
}

/// Extractor for admin routes: the admin token or an admin identity.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticator(req)
                .and_then(|a| a.check_same_origin(req).and_then(|()| a.authenticate(req)))
                .and_then(|c| match c.role {
                    Role::Admin => Ok(Self(c)),
                    Role::Publisher => Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "a publish token may only publish events; use the admin token here",
                    )),
                }),
        )
    }
}

/// Extractor for publishing: the admin token or a publish token.
#[derive(Debug, Clone)]
pub struct AdminOrPublisher(pub Caller);

impl FromRequest for AdminOrPublisher {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticator(req)
                .and_then(|a| a.check_same_origin(req).and_then(|()| a.authenticate(req)))
                .map(Self),
        )
    }
}

/// A new random admin token (32 bytes as hex) for a run without `auth.admin_token`.
#[must_use]
pub fn generate_token() -> Secret {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    Secret::new(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn auth() -> Authenticator {
        let cfg = AuthConfig {
            admin_token: None,
            publish_tokens: vec![Secret::new("pub-1")],
            identity_header: Some("X-Frontier-Email".into()),
            admin_emails: vec!["Ops@Example.com".into()],
        };
        Authenticator::new(&cfg, &Secret::new("adm"))
    }

    #[test]
    fn roles_and_identities() {
        let a = auth();
        let r = TestRequest::default()
            .insert_header(("Authorization", "Bearer adm"))
            .to_http_request();
        let c = a.authenticate(&r).expect("admin");
        assert_eq!((c.role, c.identity.as_str()), (Role::Admin, "admin"));

        let r = TestRequest::default()
            .insert_header(("Authorization", "bearer pub-1"))
            .insert_header(("X-Frontier-Email", "svc@example.com"))
            .to_http_request();
        let c = a.authenticate(&r).expect("publisher");
        assert_eq!(
            (c.role, c.identity.as_str()),
            (Role::Publisher, "publish:1"),
            "a bearer token names the actor, not the identity header"
        );
        assert!(c.scope.starts_with("publish:") && c.scope != "publish:1");

        let r = TestRequest::default()
            .insert_header(("Authorization", "Bearer adm"))
            .insert_header(("X-Frontier-Email", "ops@example.com"))
            .to_http_request();
        assert_eq!(a.authenticate(&r).expect("admin").identity, "admin");

        let r = TestRequest::default()
            .insert_header(("X-Frontier-Email", "ops@example.com"))
            .to_http_request();
        let c = a.authenticate(&r).expect("email admin");
        assert_eq!(
            (c.role, c.identity.as_str()),
            (Role::Admin, "ops@example.com")
        );

        for bad in [
            TestRequest::default().insert_header(("Authorization", "Bearer nope")),
            TestRequest::default().insert_header(("Authorization", "Basic adm")),
            TestRequest::default().insert_header(("X-Frontier-Email", "someone@example.com")),
            TestRequest::default(),
        ] {
            assert_eq!(
                a.authenticate(&bad.to_http_request())
                    .expect_err("401")
                    .code(),
                "unauthorized"
            );
        }
    }

    #[test]
    fn cross_origin_state_changes_are_refused_with_an_identity_header() {
        let a = auth();
        let post = |headers: &[(&str, &str)]| {
            let mut r = TestRequest::post().uri("/v1beta1/admin/webhooks");
            for h in headers {
                r = r.insert_header(*h);
            }
            a.check_same_origin(&r.to_http_request())
                .map_err(|e| e.code().to_string())
        };
        let json = ("Content-Type", "application/json");
        assert_eq!(
            post(&[
                ("Host", "hr.example.com"),
                ("Origin", "https://evil.example"),
                json
            ]),
            Err("cross_origin".into())
        );
        assert_eq!(
            post(&[("Host", "hr.example.com"), ("Origin", "null"), json]),
            Err("cross_origin".into())
        );
        assert_eq!(
            post(&[("Host", "hr.example.com"), ("Sec-Fetch-Site", "cross-site")]),
            Err("cross_origin".into())
        );
        assert_eq!(
            post(&[
                ("Host", "hr.example.com"),
                ("Origin", "https://hr.example.com"),
                json
            ]),
            Ok(())
        );
        assert_eq!(
            post(&[
                ("Host", "hr.example.com:8443"),
                ("Origin", "https://hr.example.com:8443"),
                json
            ]),
            Ok(())
        );
        assert_eq!(
            post(&[
                ("Host", "hr.example.com"),
                ("Content-Type", "text/plain"),
                ("Content-Length", "3")
            ]),
            Err("unsupported_media_type".into())
        );
        assert_eq!(
            post(&[
                ("Host", "hr.example.com"),
                ("Content-Type", "application/x-www-form-urlencoded")
            ]),
            Err("unsupported_media_type".into())
        );
        assert_eq!(
            post(&[("Host", "hr.example.com")]),
            Ok(()),
            "no body, no origin: curl"
        );
        let get = TestRequest::get()
            .insert_header(("Origin", "https://evil.example"))
            .to_http_request();
        assert!(
            a.check_same_origin(&get).is_ok(),
            "reads are not state changes"
        );

        let without = Authenticator::new(
            &AuthConfig {
                admin_token: None,
                publish_tokens: vec![],
                identity_header: None,
                admin_emails: vec![],
            },
            &Secret::new("adm"),
        );
        let r = TestRequest::post()
            .insert_header(("Origin", "https://evil.example"))
            .to_http_request();
        assert!(
            without.check_same_origin(&r).is_ok(),
            "bearer-only servers are not affected"
        );
    }
}
