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
