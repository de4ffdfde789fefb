//! The binary's verbs: config layering and errors, migrations, exit codes.

use crate::helpers::*;

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
