//! A throwaway PostgreSQL cluster for one test: `initdb` into a temp dir and `pg_ctl start` on a
//! free loopback port (Debian's `postgresql` package), stopped and removed when dropped. Run as
//! root, the cluster belongs to the `postgres` user, which PostgreSQL requires.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use super::free_port;

/// A running cluster; every database in it accepts the `hookrelay` user without a password.
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
                bin.join("initdb").is_file().then_some((v, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

impl PgCluster {
    /// Starts a cluster, or returns `None` with a note when PostgreSQL is not installed; under
    /// `CI` its absence fails the test instead.
    pub fn start(what: &str) -> Option<Self> {
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
        let port = free_port();
        let data = dir.path().join("data");
        let cluster = Self { dir, bin, port };
        cluster.pg(
            "initdb",
            &[
                "-D",
                path(&data),
                "-U",
                "hookrelay",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.dir.path().display()
        );
        let log = cluster.dir.path().join("postgres.log");
        cluster.pg(
            "pg_ctl",
            &[
                "-D",
                path(&data),
                "-o",
                &options,
                "-l",
                path(&log),
                "-w",
                "start",
            ],
        );
        Some(cluster)
    }

    /// A URL for database `db` (see [`Self::create_db`]).
    pub fn url(&self, db: &str) -> String {
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
        if nix::unistd::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
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
