//! A throwaway PostgreSQL cluster for one test: `initdb` into a temp dir and `pg_ctl start` on a
//! free loopback port (Debian's `postgresql` package), stopped and removed when dropped. Run as
//! root, the cluster belongs to the `postgres` user, which PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::free_port;

/// The password of the cluster's `hookrelay` user (it logs in with SCRAM, over TCP).
pub const PASSWORD: &str = "test-pg-password";

/// A running cluster whose superuser is `hookrelay`, with [`PASSWORD`].
pub struct PgCluster {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The directory holding `initdb` and `pg_ctl`: on `PATH`, else Debian's
/// `/usr/lib/postgresql/<newest>/bin`.
pub fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                let bin = e.path().join("bin");
                (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

impl PgCluster {
    /// Starts a cluster for tests (`fsync` off: a test's data need not survive a power cut), or
    /// returns `None` with a note when PostgreSQL is not installed; under `CI` its absence fails
    /// the test instead.
    pub fn start(what: &str) -> Option<Self> {
        Self::start_with(what, "-c fsync=off -c full_page_writes=off")
    }

    /// As [`PgCluster::start`], with `settings` (`-c name=value …`) for the server.
    pub fn start_with(what: &str, settings: &str) -> Option<Self> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var("CI").is_err(),
                "{what} needs PostgreSQL (initdb, pg_ctl), which CI must install (.ci/run: apt-get install -y postgresql)"
            );
            eprintln!(
                "SKIPPED {what}: PostgreSQL's initdb and pg_ctl not found; install them with `apt-get install postgresql`"
            );
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("hookrelay-pg")
            .tempdir_in(std::env::temp_dir())
            .expect("temp dir");
        if nix::unistd::geteuid().is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("look up user postgres")
                .expect("PostgreSQL's package creates the user postgres");
            nix::unistd::chown(dir.path(), Some(pg.uid), Some(pg.gid)).expect("chown");
        }
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("write the password file");
        if nix::unistd::geteuid().is_root() {
            let pg = nix::unistd::User::from_name("postgres")
                .expect("look up user postgres")
                .expect("PostgreSQL's package creates the user postgres");
            nix::unistd::chown(&pwfile, Some(pg.uid), Some(pg.gid)).expect("chown");
        }
        let mut cluster = Self { dir, bin, port: 0 };
        cluster.pg(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "hookrelay",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", path(&pwfile)),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let log = cluster.dir.path().join("postgres.log");
        // The port is picked just before the start; one taken in between gets another try.
        for attempt in 1..=3 {
            cluster.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 {settings}",
                cluster.port,
                cluster.dir.path().display()
            );
            let out = cluster
                .command("pg_ctl")
                .args([
                    "-D",
                    path(&data),
                    "-o",
                    &options,
                    "-l",
                    path(&log),
                    "-w",
                    "start",
                ])
                .output()
                .expect("run pg_ctl");
            if out.status.success() {
                break;
            }
            assert!(
                attempt < 3,
                "pg_ctl start failed: {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Some(cluster)
    }

    /// A URL for database `db` (see [`Self::create_db`]), with the password.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://hookrelay:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// The same URL without the password (which is then [`PASSWORD`], e.g. from `$PGPASSWORD`).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://hookrelay@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database `db`.
    pub async fn create_db(&self, db: &str) {
        let client = self.connect("postgres").await;
        client
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create database");
    }

    /// A client on database `db`.
    pub async fn connect(&self, db: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url(db), tokio_postgres::NoTls)
            .await
            .expect("connect to the test cluster");
        tokio::spawn(connection);
        client
    }

    /// One of PostgreSQL's programs, run as `postgres` when this is root.
    fn command(&self, program: &str) -> Command {
        let exe = self.bin.join(program);
        let mut c = if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        // Not the test's own folder, which `postgres` may not be allowed into.
        c.current_dir(self.dir.path());
        c
    }

    /// Runs one of PostgreSQL's programs; panics with its output when it fails.
    fn pg(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .expect("run a PostgreSQL program");
        assert!(
            out.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .args(["-D", path(&data), "-m", "immediate", "stop"])
            .output();
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}
