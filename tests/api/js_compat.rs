//! The envelope writer against JavaScript itself: for generated bodies, hookrelay's bytes must
//! equal `JSON.stringify(JSON.parse(body))` as Node computes it, and the seed's Express receiver
//! (which re-serializes before verifying) must accept real deliveries.
//!
//! Node is required under `CI=true`; locally, without it, these tests are ignored with what to
//! install (build.rs looks for it).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{RngExt as _, SeedableRng as _};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// Whether `node` can run (build.rs saw it, but it may be gone since, or the test was run with
/// `--ignored`); under CI its absence fails the test.
fn node_or_skip(what: &str) -> bool {
    let ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "{what} needs Node.js, which CI must install (.ci/run: apt-get install -y nodejs npm)"
        );
        eprintln!("SKIPPED {what}: Node.js is not installed (apt-get install nodejs npm)");
    }
    ok
}

/// `JSON.stringify(JSON.parse(line))` for every line, by Node.
fn node_roundtrip(lines: &[String]) -> Vec<String> {
    let script = r#"
        let input = '';
        process.stdin.setEncoding('utf8');
        process.stdin.on('data', d => input += d);
        process.stdin.on('end', () => {
            const out = input.split('\n').filter(l => l.length > 0).map(l => JSON.stringify(JSON.parse(l)));
            process.stdout.write(out.join('\n') + '\n');
        });
    "#;
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = lines.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(text.as_bytes()).expect("write"));
    let out = child.wait_with_output().expect("node output");
    writer.join().expect("writer");
    assert!(out.status.success(), "node failed");
    String::from_utf8(out.stdout)
        .expect("utf8")
        .lines()
        .map(String::from)
        .collect()
}

/// Random JSON *text*, written the way other serializers might: numbers as `1.0`, `1E5`, `-0`,
/// `1.5e-7`; strings with escapes, control characters, unicode and surrogate pairs; keys that
/// look like array indices; nesting.
struct Gen(rand::rngs::StdRng);

impl Gen {
    fn number(&mut self) -> String {
        let r = &mut self.0;
        match r.random_range(0..12) {
            0 => r.random_range(-1000i64..1000).to_string(),
            1 => format!("{}.0", r.random_range(-100i64..100)),
            2 => format!("{}e{}", r.random_range(1..99), r.random_range(-30..30)),
            3 => format!(
                "{}.{}E+{}",
                r.random_range(1..9),
                r.random_range(0..999),
                r.random_range(0..25)
            ),
            4 => "-0".to_string(),
            5 => format!("{}", r.random_range(0.0f64..1.0)),
            6 => format!("{:e}", r.random_range(-1e300f64..1e300)),
            7 => format!("{}", r.random::<u64>() >> r.random_range(0..20)),
            8 => format!("0.{:0>7}", r.random_range(1..9999)),
            9 => "1694046470.93".to_string(),
            10 => format!(
                "-{}.{}e-{}",
                r.random_range(1..9),
                r.random_range(1..99),
                r.random_range(1..12)
            ),
            _ => format!("{}", r.random_range(-1.0e21f64..1.0e21)),
        }
    }

    fn string(&mut self) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            " ",
            "é",
            "☃",
            "𝄞",
            "\\\"",
            "\\\\",
            "\\/",
            "\\n",
            "\\t",
            "\\r",
            "\\b",
            "\\f",
            "\\u0001",
            "\\u001f",
            "\\u007f",
            "\\u00e9",
            "\\u2028",
            "\\u2029",
            "\\ud834\\udd1e",
            "<script>",
            "&amp;",
            "'",
            "\u{2028}",
            "\u{7f}",
        ];
        let n = self.0.random_range(0..8);
        let body: String = (0..n)
            .map(|_| PIECES[self.0.random_range(0..PIECES.len())])
            .collect();
        format!("\"{body}\"")
    }

    fn key(&mut self) -> String {
        match self.0.random_range(0..6) {
            0 => format!("\"{}\"", self.0.random_range(0..20)),
            1 => "\"01\"".into(),
            2 => "\"4294967295\"".into(),
            3 => "\"-1\"".into(),
            _ => self.string(),
        }
    }

    fn value(&mut self, depth: u32) -> String {
        let pick = if depth > 3 {
            self.0.random_range(0..4)
        } else {
            self.0.random_range(0..6)
        };
        match pick {
            0 => self.number(),
            1 => self.string(),
            2 => ["true", "false", "null"][self.0.random_range(0..3)].into(),
            3 => self.number(),
            4 => {
                let n = self.0.random_range(0..5);
                let items: Vec<String> = (0..n).map(|_| self.value(depth + 1)).collect();
                format!("[ {} ]", items.join(" , "))
            }
            _ => {
                let n = self.0.random_range(0..6);
                let items: Vec<String> = (0..n)
                    .map(|_| format!("{} : {}", self.key(), self.value(depth + 1)))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}

#[test]
#[cfg_attr(missing_node, ignore = "needs Node.js: apt-get install nodejs")]
fn the_envelope_writer_matches_json_stringify() {
    if !node_or_skip("the JavaScript JSON comparison") {
        return;
    }
    let mut g = Gen(rand::rngs::StdRng::seed_from_u64(20_261_125));
    let inputs: Vec<String> = (0..10_000).map(|_| g.value(0)).collect();
    let ours: Vec<String> = inputs
        .iter()
        .map(|text| {
            let v: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("generated invalid JSON {text}: {e}"));
            String::from_utf8(hookrelay::events::json::to_js_json(&v)).expect("utf8")
        })
        .collect();
    let theirs = node_roundtrip(&inputs);
    assert_eq!(theirs.len(), inputs.len());
    for ((input, ours), theirs) in inputs.iter().zip(&ours).zip(&theirs) {
        assert_eq!(ours, theirs, "input: {input}");
    }
    // And what hookrelay writes is a fixed point: re-serializing it changes nothing.
    let again = node_roundtrip(&ours);
    assert_eq!(again, ours);
}

/// A free loopback port.
struct Node(std::process::Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
#[cfg_attr(
    any(missing_node, missing_node_packages),
    ignore = "needs Node.js and npm packages: apt-get install nodejs npm && npm ci --prefix tests/receivers"
)]
async fn the_seeds_express_receiver_verifies_real_deliveries() {
    if !node_or_skip("the Express receiver test") {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/receivers");
    if !dir.join("node_modules/express").exists() {
        assert!(
            std::env::var("CI").is_err(),
            "express is not installed: .ci/run must run `npm ci --prefix tests/receivers`"
        );
        eprintln!("SKIPPED the Express receiver test: run `npm ci --prefix tests/receivers` first");
        return;
    }
    let app = delivery_app().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/webhooks/frontier");
    let wh = create_webhook(&app, json!({"url": url, "retry_schedule": []})).await;
    let secret = wh["secrets"][0]["value"]
        .as_str()
        .expect("secret")
        .to_string();
    // A second endpoint on the same receiver with a different secret: the receiver must refuse it.
    let other = create_webhook(
        &app,
        json!({"url": format!("{url}?other=1"), "retry_schedule": []}),
    )
    .await;

    let _node = Node(
        Command::new("node")
            .arg(dir.join("frontier-express.js"))
            .env("WEBHOOK_SECRET", &secret)
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .expect("start the Express receiver"),
    );
    wait_until(
        Duration::from_secs(15),
        "the Express receiver to listen",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;

    let tricky = [
        json!({"floats": [1.0, 1.5, -0.0, 0.1, 2.5e-7, 1e21, 1.2345678901234567e300, 100000000000000000000.0]}),
        json!({"text": "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} sep \u{2028} é ☃ 𝄞 <script>alert(1)</script>"}),
        json!({"2": "b", "1": "a", "x": {"10": 1, "9": 2, "y": null}, "01": "not an index", "emitted_at": 1694046470.93}),
        json!({"nested": [[], {}, [{"deep": [true, false, null]}]], "ints": [0, -1, 9007199254740991_u64]}),
    ];
    let mut event_ids = Vec::new();
    for metadata in &tricky {
        let res = publish(
            &app,
            json!({"action": "app.user.created", "data": {
                "actor": {"id": "user_1", "type": "user", "name": "a@example.com"},
                "target": {"id": "user_2", "type": "user", "name": "Zoë"},
                "org_id": "org_1",
                "metadata": metadata
            }}),
        )
        .await;
        event_ids.push(res["id"].as_str().expect("id").to_string());
    }
    let wh_id = wh["id"].as_str().expect("id").to_string();
    let other_id = other["id"].as_str().expect("id").to_string();
    let settled = wait_until(
        Duration::from_secs(20),
        "all deliveries to settle",
        || async {
            let list = app
                .get_json("/v1beta1/admin/deliveries?limit=100", StatusCode::OK)
                .await["deliveries"]
                .clone();
            let list = list.as_array().expect("list").clone();
            (list.len() == 2 * tricky.len() && list.iter().all(|d| d["state"] != "pending"))
                .then_some(list)
        },
    )
    .await;
    for d in &settled {
        if d["webhook_id"] == wh_id.as_str() {
            assert_eq!(d["state"], "succeeded", "the Express receiver refused {d}");
            assert_eq!(d["last_status"], 200);
        } else {
            assert_eq!(d["webhook_id"], other_id.as_str());
            assert_eq!(d["state"], "failed", "a wrong secret must be refused: {d}");
            assert_eq!(d["last_status"], 401);
        }
    }
}
