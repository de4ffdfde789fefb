//! Who is calling: the admin token, publish tokens, or a trusted identity header (SPEC §2).
//!
//! Handlers ask for [`Admin`] or [`Publisher`] as an extractor; a missing or wrong token is 401
//! `unauthorized`, a publish token on an admin route 403 `forbidden`. Tokens are compared through
//! their SHA-256 digests in constant time, so neither content nor length leaks through timing.

use std::collections::HashSet;
use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
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
    /// Recorded in the audit log: the identity header's value when present, else the token kind.
    pub identity: String,
    pub role: Role,
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

    /// Identifies the caller of `req`.
    ///
    /// # Errors
    /// 401 `unauthorized` when no accepted credential is present.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let identity = self
            .identity_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
        match bearer(req) {
            Some(token) => {
                let d = digest(token);
                if bool::from(d.ct_eq(&self.admin_digest)) {
                    return Ok(Caller {
                        identity: identity.unwrap_or_else(|| "admin-token".into()),
                        role: Role::Admin,
                    });
                }
                let is_publisher = self
                    .publish_digests
                    .iter()
                    .fold(false, |found, p| found | bool::from(d.ct_eq(p)));
                if is_publisher {
                    return Ok(Caller {
                        identity: identity.unwrap_or_else(|| "publish-token".into()),
                        role: Role::Publisher,
                    });
                }
                Err(unauthorized("the bearer token is not valid"))
            }
            None => match identity {
                Some(id) if self.admin_emails.contains(&id.to_ascii_lowercase()) => Ok(Caller {
                    identity: id,
                    role: Role::Admin,
                }),
                _ => Err(unauthorized("send `Authorization: Bearer <token>`")),
            },
        }
    }
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
                .and_then(|a| a.authenticate(req))
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
pub struct Publisher(pub Caller);

impl FromRequest for Publisher {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            authenticator(req)
                .and_then(|a| a.authenticate(req))
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
        assert_eq!((c.role, c.identity.as_str()), (Role::Admin, "admin-token"));

        let r = TestRequest::default()
            .insert_header(("Authorization", "bearer pub-1"))
            .insert_header(("X-Frontier-Email", "svc@example.com"))
            .to_http_request();
        let c = a.authenticate(&r).expect("publisher");
        assert_eq!(
            (c.role, c.identity.as_str()),
            (Role::Publisher, "svc@example.com")
        );

        let r = TestRequest::default()
            .insert_header(("X-Frontier-Email", "ops@example.com"))
            .to_http_request();
        assert_eq!(a.authenticate(&r).expect("email admin").role, Role::Admin);

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
}
