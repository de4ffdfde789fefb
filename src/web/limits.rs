//! Limits every request is held to, whoever sends it: a request body must arrive in full within
//! `server.body_timeout`, or the request is answered 408 `request_timeout` and its connection
//! closed. (Headers must arrive within [`HEADER_TIMEOUT`]; open connections are capped by
//! `server.max_connections`, both set on the server in `app`.)
//!
//! Without the deadline a client that sends headers and part of a body and then stalls — or
//! trickles a byte every few seconds — holds its connection and the buffered bytes forever; a
//! few thousand of them exhaust the host. With it, what unfinished bodies hold is bounded by
//! `max_connections × max_body_bytes` and lasts at most `body_timeout`.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{Bytes, Data};
use actix_web::{Error, HttpMessage as _, ResponseError as _};
use futures_util::Stream;

use crate::error::ApiError;

/// How long a client has to send the request line and headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The body deadline in force, registered as app data by `app`.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// The request body as a stream that fails once `deadline` passes before its end.
struct Deadline {
    inner: Option<Payload>,
    /// Where the unfinished body goes when the deadline fires: kept alive until the 408 is
    /// out, because actix drains (keeps reading) a dropped chunked body instead of closing
    /// the connection — a stalled chunked sender would hold its connection forever.
    held: Rc<std::cell::RefCell<Option<Payload>>>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Set when the deadline fired, so the middleware can answer 408 whatever extractor read.
    expired: Rc<Cell<bool>>,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(chunk)),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    self.expired.set(true);
                    let unfinished = self.inner.take();
                    *self.held.borrow_mut() = unfinished;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive within server.body_timeout",
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

fn timed_out(timeout: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "request_timeout",
        format!(
            "the request body did not arrive in full within {} (server.body_timeout)",
            humantime::format_duration(timeout)
        ),
    )
}

/// Middleware: puts the body behind the `server.body_timeout` deadline (counted from when the
/// headers were read) and answers 408 `request_timeout` with `Connection: close` when it fired,
/// whatever the handler made of the failed read.
///
/// # Errors
/// Only what the inner service returns.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, Error> {
    let timeout = req
        .app_data::<Data<BodyTimeout>>()
        .map_or(Duration::from_secs(10), |t| t.0);
    let expired = Rc::new(Cell::new(false));
    let held = Rc::new(std::cell::RefCell::new(None));
    let inner = req.take_payload();
    let stream = Deadline {
        inner: Some(inner),
        held: Rc::clone(&held),
        sleep: Box::pin(tokio::time::sleep(timeout)),
        expired: Rc::clone(&expired),
        done: false,
    };
    req.set_payload(Payload::Stream {
        payload: Box::pin(stream),
    });
    let res = next.call(req).await?;
    if !expired.get() {
        return Ok(res.map_into_left_body());
    }
    tracing::info!(
        peer = ?res.request().peer_addr(),
        path = %res.request().path(),
        "request body not received within server.body_timeout; closing the connection"
    );
    // Hold the unfinished body until the answer has gone out with `Connection: close`, so the
    // connection is shut rather than drained.
    if let Some(unfinished) = held.borrow_mut().take() {
        actix_web::rt::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(unfinished);
        });
    }
    let mut answer = timed_out(timeout).error_response();
    answer
        .head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    Ok(res.into_response(answer).map_into_right_body())
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
