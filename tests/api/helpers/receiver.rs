//! Receivers and webhooks for delivery tests: a scripted receiver on loopback that records what
//! it got, the config that lets deliveries reach it, and the calls that create webhooks and
//! publish events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookrelay::config::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::{TestApp, assert_json, spawn_app_with, wait_until};

/// A receiver on loopback that answers from a script (the last answer repeats) and records
/// every request with the time it came.
pub struct TestReceiver {
    pub server: MockServer,
    seen: Arc<Mutex<Vec<(Instant, Request)>>>,
}

struct Script {
    answers: Vec<ResponseTemplate>,
    seen: Arc<Mutex<Vec<(Instant, Request)>>>,
}

impl Respond for Script {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut seen = self.seen.lock().expect("lock");
        seen.push((Instant::now(), req.clone()));
        self.answers[(seen.len() - 1).min(self.answers.len() - 1)].clone()
    }
}

impl TestReceiver {
    pub async fn start(answers: Vec<ResponseTemplate>) -> Self {
        let server = MockServer::start().await;
        let seen = Arc::new(Mutex::new(Vec::new()));
        Mock::given(wiremock::matchers::any())
            .respond_with(Script {
                answers,
                seen: Arc::clone(&seen),
            })
            .mount(&server)
            .await;
        Self { server, seen }
    }

    pub async fn ok() -> Self {
        Self::start(vec![
            ResponseTemplate::new(200).set_body_json(json!({"received": true})),
        ])
        .await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.uri())
    }

    pub fn requests(&self) -> Vec<(Instant, Request)> {
        self.seen.lock().expect("lock").clone()
    }

    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<(Instant, Request)> {
        wait_until(within, &format!("{n} requests at the receiver"), || async {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .await
    }
}

pub fn local_delivery(c: &mut Config) {
    c.delivery.allow_http = true;
    c.delivery.allow_private_networks = true;
}

pub async fn delivery_app() -> TestApp {
    spawn_app_with(local_delivery).await
}

/// Creates a webhook, returning the whole answer.
pub async fn create_webhook(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1beta1/admin/webhooks", &body).await;
    assert_json(res, StatusCode::OK).await["webhook"].clone()
}

pub async fn publish(app: &TestApp, body: Value) -> Value {
    assert_json(
        app.post("/v1beta1/events", &body).await,
        StatusCode::ACCEPTED,
    )
    .await
}
