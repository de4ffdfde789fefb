//! The HTTP skeleton: error shape for every kind of bad request, auth, health and the page.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn unknown_route_and_wrong_method_are_json_errors() {
    let app = spawn_app().await;
    assert_error(app.get("/nope").await, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .client
        .delete(app.url("/healthz"))
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let res = app
        .client
        .put(app.url("/v1beta1/admin/jobs"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    assert_eq!(
        res.headers()["allow"],
        "GET, POST, HEAD",
        "the methods it has"
    );
    assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_bodies_and_queries_get_clear_errors() {
    let app = spawn_app_with(|c| c.server.max_body_bytes = 1024).await;
    let post_raw = |body: String, ct: &'static str| {
        app.client
            .post(app.url("/v1beta1/admin/jobs"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let res = post_raw("{\"kind\":".into(), "application/json")
        .await
        .expect("req");
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_json").await;
    let res = post_raw("{}".into(), "text/plain").await.expect("req");
    assert_error(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let big = format!(
        "{{\"kind\":\"system.noop\",\"payload\":{{\"x\":\"{}\"}}}}",
        "a".repeat(4096)
    );
    let res = post_raw(big, "application/json").await.expect("req");
    assert_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let res = app
        .post(
            "/v1beta1/admin/jobs",
            &json!({"kind": "system.noop", "bogus": 1}),
        )
        .await;
    // Valid JSON with an unknown field is a bad payload, not malformed JSON.
    assert_error(res, StatusCode::BAD_REQUEST, "invalid_payload").await;

    assert_error(
        app.get("/v1beta1/admin/jobs?limit=abc").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/jobs?limit=501").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/jobs?state=sleeping").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    assert_error(
        app.get("/v1beta1/admin/audit-logs?since=yesterday").await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let app = spawn_app().await;
    let url = app.url("/v1beta1/admin/jobs");
    let res = app.client.get(&url).send().await.expect("req");
    assert_eq!(
        res.headers().get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let res = app
        .client
        .get(&url)
        .bearer_auth(PUBLISH_TOKEN)
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .client
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn identity_header_admins_are_recorded_in_the_audit_log() {
    let app = spawn_app_with(|c| {
        c.auth.identity_header = Some("X-Frontier-Email".into());
        c.auth.admin_emails = vec!["ops@example.com".into()];
    })
    .await;
    let res = app
        .client
        .post(app.url("/v1beta1/admin/jobs"))
        .header("X-Frontier-Email", "ops@example.com")
        .json(&noop(json!({})))
        .send()
        .await
        .expect("req");
    let job = assert_json(res, StatusCode::CREATED).await;
    let logs = app
        .get_json(
            "/v1beta1/admin/audit-logs?action=job.enqueue",
            StatusCode::OK,
        )
        .await;
    assert_eq!(logs["audit_logs"][0]["actor"], "ops@example.com");
    assert_eq!(logs["audit_logs"][0]["target_id"], job["job"]["id"]);

    let res = app
        .client
        .get(app.url("/v1beta1/admin/jobs"))
        .header("X-Frontier-Email", "intruder@example.com")
        .send()
        .await
        .expect("req");
    assert_error(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn health_readiness_and_status_page() {
    let app = spawn_app().await;
    let health = assert_json(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("req"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let ready = assert_json(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .expect("req"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["checks"]["workers"], "ok");

    let res = app.client.get(app.url("/")).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers()["location"], "/admin");

    let res = app.client.get(app.url("/admin")).send().await.expect("req");
    assert_eq!(res.status(), StatusCode::OK);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/html")
    );
    let etag = res.headers()["etag"].clone();
    let html = res.text().await.expect("html");
    assert!(
        html.contains("/admin/app.js") && !html.contains("<script>"),
        "no inline script"
    );

    let js = app
        .client
        .get(app.url("/admin/app.js"))
        .send()
        .await
        .expect("req");
    assert!(
        js.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/javascript")
    );
    for (file, content_type) in [("app.css", "text/css"), ("favicon.svg", "image/svg+xml")] {
        let res = app
            .client
            .get(app.url(&format!("/admin/{file}")))
            .send()
            .await
            .expect("req");
        assert_eq!(res.status(), StatusCode::OK, "{file}");
        assert!(
            res.headers()["content-type"]
                .to_str()
                .expect("ct")
                .starts_with(content_type),
            "{file}"
        );
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    }
    let again = app
        .client
        .get(app.url("/admin"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("req");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_error(
        app.client
            .get(app.url("/admin/..%2fCargo.toml"))
            .send()
            .await
            .expect("req"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        app.client
            .get(app.url("/admin/secret.txt"))
            .send()
            .await
            .expect("req"),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn readyz_fails_when_the_writer_is_stuck() {
    let app = spawn_app().await;
    // A transaction that holds the writer for longer than the readiness probe waits (3 s).
    let store = app.app_store.clone();
    let blocker = tokio::spawn(async move {
        store
            .writer()
            .write(|_tx| {
                std::thread::sleep(Duration::from_millis(4500));
                Ok::<_, hookrelay::store::StoreError>(())
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("req");
    let v = assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(v["checks"]["database"], "timeout", "{v}");
    assert_eq!(v["checks"]["writer"], "ok", "alive, but stuck");
    blocker.await.expect("task").expect("write");
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK, "ready again once it moves");
}

#[tokio::test]
async fn readyz_fails_when_the_writer_is_gone() {
    let app = spawn_app().await;
    app.app_store.writer().stop().await;
    let res = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("req");
    let v = assert_error(res, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    assert_eq!(v["checks"]["writer"], "stopped");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("writer"),
        "{v}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_and_the_committed_copy_is_current() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("req");
    assert_eq!(res.status(), StatusCode::OK);
    let served = res.text().await.expect("body");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var_os("HOOKRELAY_UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &served).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == served,
        "docs/openapi.json is stale: regenerate it with \
         `HOOKRELAY_UPDATE_OPENAPI=1 cargo test --test api openapi` and commit it"
    );

    let doc: serde_json::Value = serde_json::from_str(&served).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for (path, method) in [
        ("/webhooks/front", "post"),
        ("/v1beta1/events", "post"),
        ("/v1beta1/admin/webhooks", "post"),
        ("/v1beta1/admin/webhooks/{id}", "put"),
        ("/v1beta1/admin/webhooks/{id}", "delete"),
        ("/v1beta1/admin/deliveries/{id}/retry", "post"),
        ("/v1beta1/admin/cron/{name}/run", "post"),
        ("/v1beta1/admin/stats", "get"),
        ("/metrics", "get"),
        ("/readyz", "get"),
        ("/openapi.json", "get"),
        ("/admin/{file}", "get"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"]["400"].is_object() && op["responses"]["503"].is_object(),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["paths"]["/v1beta1/admin/jobs"]["get"]["security"],
        json!([{"admin_token": []}])
    );
    // Every documented operation is served: none answers 404 `not_found` for its route.
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{} paths", paths.len());
    for (path, item) in paths {
        for method in item.as_object().expect("item").keys() {
            let url = app.url(
                &path
                    .replace("{id}", "x_1")
                    .replace("{name}", "retention")
                    .replace("{file}", "app.js"),
            );
            let res = app
                .client
                .request(method.to_uppercase().parse().expect("method"), &url)
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("req");
            if res.status() == StatusCode::NOT_FOUND {
                let v: serde_json::Value = res.json().await.unwrap_or_default();
                assert!(
                    !v["error"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with("no route"),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
}
