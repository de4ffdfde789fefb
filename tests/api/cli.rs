//! The binary's verbs: config layering and errors, migrations, exit codes.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_hookrelay");

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_config_layers_file_then_env_then_seed_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.toml"),
        "[server]\nbind = \"127.0.0.1:9000\"\nshutdown_grace = \"7s\"\n[front]\napi_token = \"from-file-token\"\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("admin.tok"), "file-admin-secret\n").expect("write");

    // ./config.toml is found without --config.
    let out = run_bin(dir.path(), &["check-config"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("bind = \"127.0.0.1:9000\"") && text.contains("shutdown_grace = \"7s\""),
        "{text}"
    );
    assert!(
        !text.contains("from-file-token") && text.contains("[redacted]"),
        "{text}"
    );

    let out = run_bin(
        dir.path(),
        &["check-config"],
        &[
            ("HOOKRELAY_SERVER__BIND", "0.0.0.0:9100"),
            ("HOOKRELAY_JOBS__WORKERS", "3"),
            ("HOOKRELAY_AUTH__ADMIN_TOKEN_FILE", "admin.tok"),
            ("FRONT_API_TOKEN", "seed-token-xyz"),
            ("FRONT_WEBHOOK_SECRET", "seed-secret-xyz"),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("bind = \"0.0.0.0:9100\"") && text.contains("workers = 3"),
        "{text}"
    );
    for secret in [
        "seed-token-xyz",
        "seed-secret-xyz",
        "file-admin-secret",
        "from-file-token",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert!(text.contains("webhook_secret = \"[redacted]\""), "{text}");
    assert!(text.contains("admin_token = \"[redacted]\""), "{text}");
}

#[test]
fn config_errors_name_the_key_and_where_it_came_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nbind = \"127.0.0.1:1\"\nmax_body_byte = 10\n",
    )
    .expect("write");
    let out = run_bin(
        dir.path(),
        &["check-config", "--config", path.to_str().expect("path")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("max_body_byte") && err.contains("bad.toml"),
        "{err}"
    );

    std::fs::write(&path, "[jobs]\nlease = \"forever\"\n").expect("write");
    let out = run_bin(
        dir.path(),
        &["check-config", "--config", path.to_str().expect("path")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("jobs.lease") && err.contains("forever") && err.contains("bad.toml"),
        "{err}"
    );

    let out = run_bin(
        dir.path(),
        &["check-config"],
        &[("HOOKRELAY_SERVER__SHUTDOWN_GRACE", "abc")],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("server.shutdown_grace") && err.contains("HOOKRELAY_SERVER__SHUTDOWN_GRACE"),
        "{err}"
    );

    let out = run_bin(dir.path(), &["check-config"], &[("HOOKRELAY_NOPE__X", "1")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));

    let out = run_bin(
        dir.path(),
        &["check-config", "--config", "missing.toml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.toml"));

    let out = run_bin(
        dir.path(),
        &["check-config"],
        &[("HOOKRELAY_CONFIG", "also-missing.toml")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("also-missing.toml"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        run_bin(dir.path(), &["frobnicate"], &[]).status.code(),
        Some(2)
    );
    assert_eq!(
        run_bin(dir.path(), &["serve", "--bogus"], &[])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run_bin(dir.path(), &[], &[]).status.code(), Some(2));
    for verb in ["serve", "check-config", "migrate"] {
        let out = run_bin(dir.path(), &[verb, "--help"], &[]);
        assert_eq!(out.status.code(), Some(0), "{verb} --help");
        assert!(
            stdout(&out).contains("--config"),
            "{verb} --help mentions --config"
        );
    }
}

#[test]
fn migrate_applies_the_schema_once_and_refuses_newer_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("state/db.sqlite");
    let env = [("HOOKRELAY_DATABASE__PATH", db.to_str().expect("path"))];
    let out = run_bin(dir.path(), &["migrate"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("migrated from version 0 to"),
        "{}",
        stdout(&out)
    );
    let out = run_bin(dir.path(), &["migrate"], &env);
    assert!(stdout(&out).contains("up to date"), "{}", stdout(&out));

    let conn = rusqlite::Connection::open(&db).expect("db");
    let page: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .expect("page");
    assert_eq!(page, 8192);
    conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(conn);
    for verb in ["migrate", "serve"] {
        let out = run_bin(dir.path(), &[verb], &env);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        assert!(
            stderr(&out).contains("newer than this hookrelay binary"),
            "{verb}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_second_serve_on_the_same_database_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let _first = ChildApp::start(&config);
    let out = run_bin(
        dir.path(),
        &["serve", "--config", config.to_str().expect("path")],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already running"), "{}", stderr(&out));
}

/// `hookrelay serve` started as a user starts it: only the env vars given (no `RUST_LOG` unless
/// given, so the default log filter applies), no `--config` unless in `args`.
struct Serve {
    child: Child,
    /// `127.0.0.1:PORT`, from the "listening on" line.
    address: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .args(args)
            .current_dir(cwd)
            .env_remove("RUST_LOG")
            .env_remove("HOOKRELAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hookrelay serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let address = line.find("listening on http://").map(|i| {
                    let rest = &line[i + "listening on http://".len()..];
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string()
                });
                // Logged before the address is handed over, so `log()` holds the line by then.
                if let Ok(mut l) = log2.lock() {
                    l.push(line);
                }
                if let Some(a) = address {
                    let _ = tx.send(a);
                }
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hookrelay serve did not start; log:\n{}",
                    log.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        Self {
            child,
            address,
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// The status line of `GET path`.
    fn get_status(&self, path: &str) -> String {
        let mut conn = std::net::TcpStream::connect(&self.address).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.address
        )
        .expect("write request");
        let mut response = String::new();
        let _ = conn.read_to_string(&mut response);
        response.lines().next().unwrap_or_default().to_string()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `stdin` as its input.
fn run_with_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hookrelay");
    // A usage error exits before reading stdin: a broken pipe here is that, not a failure.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    child.wait_with_output().expect("wait")
}

/// Tools around hookrelay keep their own `HOOKRELAY_*` variables; none of them is config.
const FOREIGN_VARS: [(&str, &str); 3] = [
    ("HOOKRELAY_BIN", "/x"),
    ("HOOKRELAY_FOO", "bar"),
    ("HOOKRELAY_LOG_DIR", "/tmp"),
];

#[test]
fn check_config_and_migrate_read_hookrelay_config_and_ignore_other_hookrelay_vars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("from-env-file/hookrelay.db");
    let file = dir.path().join("elsewhere.toml");
    std::fs::write(
        &file,
        format!("[jobs]\nworkers = 3\n[database]\npath = {db:?}\n"),
    )
    .expect("write");
    // An empty folder: no ./config.toml to fall back on.
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut env = vec![("HOOKRELAY_CONFIG", file.to_str().expect("utf-8"))];
    env.extend(FOREIGN_VARS);

    let out = run_bin(cwd.path(), &["check-config"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("elsewhere.toml") && text.contains("workers = 3"),
        "{text}"
    );

    // Env keys still layer on top of the file HOOKRELAY_CONFIG names.
    let mut with_key = env.clone();
    with_key.push(("HOOKRELAY_JOBS__WORKERS", "5"));
    let out = run_bin(cwd.path(), &["check-config"], &with_key);
    assert!(stdout(&out).contains("workers = 5"), "{}", stderr(&out));

    let out = run_bin(cwd.path(), &["migrate"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("migrated from version 0") && db.exists(),
        "{}",
        stdout(&out)
    );
}

#[test]
fn serve_reads_hookrelay_config_and_ignores_other_hookrelay_vars() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut env = vec![("HOOKRELAY_CONFIG", config.to_str().expect("utf-8"))];
    env.extend(FOREIGN_VARS);
    let app = Serve::start(cwd.path(), &[], &env);
    // The file's port-0 bind and database, not the defaults (8080, ./data).
    assert!(
        app.address.starts_with("127.0.0.1:") && !app.address.ends_with(":8080"),
        "{}",
        app.address
    );
    assert!(app.get_status("/healthz").contains(" 200"), "{}", app.log());
    assert!(dir.path().join("hookrelay.db").exists());
    assert!(!cwd.path().join("data").exists(), "{}", app.log());
}

#[test]
fn serve_logs_no_scheduler_chatter_unless_rust_log_asks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let args = ["--config", config.to_str().expect("utf-8")];
    let chatter = ["Uninited", "Job creator created"];

    // Cron starts before the listener, so its start-up lines precede "listening on".
    let app = Serve::start(dir.path(), &args, &[]);
    let log = app.log();
    assert!(log.contains("listening on"), "{log}");
    for line in chatter {
        assert!(!log.contains(line), "{line:?} in the default log:\n{log}");
    }
    drop(app);

    // RUST_LOG still wins: the library's lines are there when asked for.
    let app = Serve::start(dir.path(), &args, &[("RUST_LOG", "info")]);
    let log = app.log();
    assert!(log.contains("Job creator created"), "{log}");
}

#[test]
fn config_errors_never_show_a_secret_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, &str, &str); 5] = [
        (
            "HOOKRELAY_AUTH__PUBLISH_TOKENS",
            "tok-sekrit-1",
            "a list of strings",
        ),
        (
            "HOOKRELAY_DELIVERY__PREVIOUS_ENCRYPTION_KEYS",
            "key-sekrit-2",
            "a list of strings",
        ),
        (
            "HOOKRELAY_AUTH__ADMIN_TOKEN",
            "[\"tok-sekrit-3\"]",
            "a string",
        ),
        ("FRONT_API_TOKEN", "[\"tok-sekrit-4\"]", "a string"),
        (
            "HOOKRELAY_DELIVERY__ENCRYPTION_KEY",
            "key-sekrit-5",
            "must be 32 bytes",
        ),
    ];
    for (var, value, expected) in cases {
        let out = run_bin(dir.path(), &["check-config"], &[(var, value)]);
        assert_eq!(out.status.code(), Some(1), "{var}");
        let err = stderr(&out);
        assert!(
            !err.contains("sekrit"),
            "{var}: the secret is in the message: {err}"
        );
        assert!(
            err.contains(&format!("from env var {var}")) && err.contains(expected),
            "{var}: {err}"
        );
    }
    let out = run_bin(
        dir.path(),
        &["check-config"],
        &[("HOOKRELAY_AUTH__PUBLISH_TOKENS", "tok")],
    );
    assert!(
        stderr(&out).contains(
            "`auth.publish_tokens` (from env var HOOKRELAY_AUTH__PUBLISH_TOKENS): \
             expected a list of strings, like [\"tok1\",\"tok2\"]"
        ),
        "{}",
        stderr(&out)
    );

    // In a file too, a syntax error included: the line holding the secret is not echoed.
    let path = dir.path().join("secret.toml");
    for text in [
        "[auth]\npublish_tokens = \"tok-sekrit-6\"\n",
        "[auth]\nadmin_token = tok-sekrit-7\n",
        "[front]\nwebhook_secret = [\"sec-sekrit-8\"]\n",
    ] {
        std::fs::write(&path, text).expect("write");
        let out = run_bin(
            dir.path(),
            &["check-config", "--config", path.to_str().expect("utf-8")],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = stderr(&out);
        assert!(!err.contains("sekrit"), "{text}: {err}");
        assert!(err.contains("secret.toml"), "{err}");
    }
}

#[test]
fn config_errors_name_keys_without_the_profile_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.toml");
    let path_arg = path.to_str().expect("utf-8");
    for (text, key) in [
        ("[server]\nbind = 8080\n", "`server.bind`"),
        ("[server]\nbindd = \"x\"\n", "`server.bindd`"),
        ("[jobs]\nworkers = -1\n", "`jobs.workers`"),
    ] {
        std::fs::write(&path, text).expect("write");
        let out = run_bin(dir.path(), &["check-config", "--config", path_arg], &[]);
        let err = stderr(&out);
        assert!(err.contains(key) && !err.contains("default."), "{err}");
    }
    let out = run_bin(
        dir.path(),
        &["check-config"],
        &[("HOOKRELAY_SERVER__MAX_BODY_BYTES", "lots")],
    );
    let err = stderr(&out);
    assert!(
        err.contains("`server.max_body_bytes` (from env var HOOKRELAY_SERVER__MAX_BODY_BYTES)")
            && err.contains("a whole number")
            && !err.contains("default."),
        "{err}"
    );
}

#[test]
fn durations_without_quotes_get_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[delivery]\ntimeout = 3\n").expect("write");
    let out = run_bin(dir.path(), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("`delivery.timeout` (in ")
            && err
                .contains("config.toml): a duration is a string with a unit, e.g. \"3s\", \"5m\""),
        "{err}"
    );

    // `30s` without quotes is not TOML at all.
    std::fs::write(&path, "[server]\nshutdown_grace = 30s\n").expect("write");
    let out = run_bin(dir.path(), &["check-config"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("`server.shutdown_grace`")
            && err.contains("line 2")
            && err.contains("a duration is a string with a unit and needs quotes: write \"30s\""),
        "{err}"
    );
}

#[test]
fn verify_takes_bare_id_and_list_signatures_and_prints_one_to_paste_back() {
    let secret = "ab".repeat(32);
    let body = b"{\"id\":\"evt_1\"}";
    let verify = |signature: &str, body: &[u8]| {
        run_with_stdin(
            &["verify", "--secret", &secret, "--signature", signature],
            body,
        )
    };
    // A wrong bare signature: exit 1, and the expected value in the same (bare) form.
    let out = verify(&"00".repeat(32), body);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("does NOT verify"), "{text}");
    let expected = text
        .trim()
        .rsplit("expected ")
        .next()
        .expect("an expected value")
        .to_string();
    assert!(
        expected.len() == 64 && expected.bytes().all(|b| b.is_ascii_hexdigit()),
        "bare hex: {expected:?}"
    );

    // Pasted back, in every form, it verifies.
    for signature in [
        expected.clone(),
        format!("1={expected}"),
        format!("2={},1={expected}", "00".repeat(32)),
        format!(" 1={expected} "),
    ] {
        let out = verify(&signature, body);
        assert_eq!(out.status.code(), Some(0), "{signature}: {}", stdout(&out));
        assert!(
            stdout(&out).contains("signature verifies"),
            "{}",
            stdout(&out)
        );
    }

    // The id form gets the id form back.
    let out = verify(&format!("1={}", "00".repeat(32)), body);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("expected 1={expected}")),
        "{}",
        stdout(&out)
    );

    // The whsec_ form of the same key.
    let whsec = format!(
        "whsec_{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0xab_u8; 32])
    );
    let out = run_with_stdin(
        &[
            "verify",
            "--secret",
            &whsec,
            "--signature",
            &format!("1={expected}"),
        ],
        body,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The other algorithm computes another value.
    let out = run_with_stdin(
        &[
            "verify",
            "--secret",
            &secret,
            "--signature",
            &expected,
            "--algorithm",
            "sha512_256",
        ],
        body,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("--algorithm sha256"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn verify_refuses_what_is_not_a_secret_or_a_signature_with_exit_2() {
    for (args, says) in [
        (
            vec!["--secret", "00", "--signature", "1=00"],
            "64 hex characters",
        ),
        (
            vec!["--secret", "whsec_AAAA", "--signature", "1=00"],
            "64 hex characters",
        ),
        (
            vec!["--secret", &"zz".repeat(32), "--signature", "1=00"],
            "64 hex characters",
        ),
        (
            vec!["--secret", &"ab".repeat(32), "--signature", "1=not-hex"],
            "X-Signature",
        ),
        (
            vec!["--secret", &"ab".repeat(32), "--signature", ""],
            "X-Signature",
        ),
    ] {
        let mut argv = vec!["verify"];
        argv.extend(args.iter().copied());
        let out = run_with_stdin(&argv, b"body");
        assert_eq!(out.status.code(), Some(2), "{argv:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{argv:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    }
}
