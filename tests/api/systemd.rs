//! systemd integration: `Type=notify` readiness, the watchdog, and stopping.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::*;

/// Messages received on the notify socket until `want` arrives (or the time is up).
fn wait_for(sock: &UnixDatagram, want: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }
    panic!("{want} not received within {within:?}; got {seen:?}");
}

#[test]
fn serve_tells_systemd_it_is_ready_feeds_the_watchdog_and_says_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_child_config(dir.path(), "");
    let socket = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&socket).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket)
        .env("WATCHDOG_USEC", "300000")
        .env_remove("WATCHDOG_PID")
        .env_remove("HOOKRELAY_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");

    wait_for(&sock, "READY=1", Duration::from_secs(20));
    // WatchdogSec=0.3 s: pinged every 0.15 s while healthy.
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(2));
    wait_for(&sock, "WATCHDOG=1", Duration::from_secs(2));

    kill(
        Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        Signal::SIGTERM,
    )
    .expect("signal");
    wait_for(&sock, "STOPPING=1", Duration::from_secs(10));
    let status = child.wait().expect("wait");
    assert!(status.success(), "graceful stop exits 0: {status}");
}

#[test]
fn the_production_config_is_valid_and_locked_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("mkdir");
    for (name, value) in [
        ("admin_token", "a-long-admin-token-from-openssl-rand"),
        (
            "encryption_key",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ),
        ("front_webhook_secret", "front-app-secret"),
        ("front_api_token", "front-api-token"),
    ] {
        std::fs::write(creds.join(name), format!("{value}\n")).expect("credential");
    }
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/config.production.toml"
    ))
    .expect("production config");
    let state = dir.path().join("state");
    let config = shipped
        .replace(
            "/run/credentials/hookrelay.service",
            creds.to_str().expect("utf-8"),
        )
        .replace("/var/lib/hookrelay", state.to_str().expect("utf-8"));
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).expect("write");
    let out = run_bin(
        dir.path(),
        &["check-config", "--config", path.to_str().expect("utf-8")],
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "allow_http = false",
        "allow_private_networks = false",
        "format = \"json\"",
        "synchronous = \"full\"",
    ] {
        assert!(stdout.contains(expected), "{expected} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("a-long-admin-token") && !stdout.contains("front-api-token"),
        "secrets redacted"
    );

    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/hookrelay.service"
    ))
    .expect("unit");
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=hookrelay",
        "User=hookrelay",
        "LoadCredential=admin_token:",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.contains(line), "{line:?} missing from the unit");
    }
    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/hookrelay.sysusers"
    ))
    .expect("sysusers");
    assert!(
        sysusers.contains("u hookrelay "),
        "the unit's user is declared"
    );
    // Every credential the config reads is loaded by the unit.
    for name in [
        "admin_token",
        "encryption_key",
        "front_webhook_secret",
        "front_api_token",
    ] {
        assert!(shipped.contains(&format!("hookrelay.service/{name}")));
        assert!(unit.contains(&format!("LoadCredential={name}:")));
    }
}
