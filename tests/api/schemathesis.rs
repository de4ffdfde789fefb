//! The API against its own OpenAPI document, fuzzed by schemathesis (from PyPI): a bounded number
//! of generated requests per operation (one pass; `SCHEMATHESIS_SECONDS=600` fuzzes for that
//! long); no 5xx, and every status, content type and body must match the document. Needs `st`:
//! `$SCHEMATHESIS`, else the pinned venv `.ci/run` makes (`target/schemathesis-venv/bin/st`), else
//! `st` on `PATH` (`pip install schemathesis`). Without it the test is ignored with what to install
//! (build.rs looks for it); under `CI=true` it fails.

use std::process::Command;

use crate::front::{RULE_SECRET, SECRET};
use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    missing_schemathesis,
    ignore = "needs schemathesis: pip install schemathesis==4.32.5 (or set SCHEMATHESIS to its st)"
)]
async fn schemathesis_finds_no_server_errors_and_no_schema_mismatches() {
    let _heavy = heavy().await;
    let venv = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/schemathesis-venv/bin/st"
    );
    let st = std::env::var("SCHEMATHESIS").unwrap_or_else(|_| {
        if std::path::Path::new(venv).is_file() {
            venv.into()
        } else {
            "st".into()
        }
    });
    // build.rs saw it, but it may be gone since, or the test was run with `--ignored`.
    if Command::new(&st).arg("--version").output().is_err() {
        let msg = "schemathesis (`st`) is not installed: `pip install schemathesis==4.32.5` \
                   (or set SCHEMATHESIS to its path)";
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let backups = tempfile::tempdir().expect("tempdir");
    let backup_dir = backups.path().to_path_buf();
    let app = spawn_app_with(move |c| {
        c.front.webhook_secret = Some(hookrelay::config::Secret::new(SECRET));
        c.front.rule_webhook_secret = Some(hookrelay::config::Secret::new(RULE_SECRET));
        // Hermetic: generated webhooks point at the internet, so no job runs here (the API
        // stores and queues as usual; the workers stay off).
        c.jobs.workers = 0;
        c.backup.dir = backup_dir;
    })
    .await;
    let schema = app.url("/openapi.json");
    let reports = tempfile::tempdir().expect("tempdir");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .args(["run", &schema])
            .args(["--header", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
            .args(["--max-examples", "10", "--seed", "20261125"])
            .args(["--phases", "examples,coverage,fuzzing", "--no-shrink"])
            // /readyz answers 503 by contract when not ready (here: jobs wait, workers are off).
            .args(["--exclude-path", "/readyz"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--request-timeout", "10"])
            // One pass by default; SCHEMATHESIS_SECONDS=600 keeps fuzzing for that long.
            .args(
                std::env::var("SCHEMATHESIS_SECONDS")
                    .map(|s| vec!["--max-time".to_string(), s])
                    .unwrap_or_default(),
            )
            .arg("--report-dir")
            .arg(reports.path())
            // Its cache (`.schemathesis/`) goes there too, not into the repository.
            .current_dir(reports.path())
            .env("NO_COLOR", "1")
            .output()
            .expect("run schemathesis")
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Tested"))
        .collect();
    println!("schemathesis: {}", summary.join("; "));
}
