//! Online backups: a consistent snapshot of the live database into one self-contained file
//! (`hookrelay backup DEST`), and the `backup` cron's numbered set in `backup.dir`.
//!
//! A snapshot opens its own read-only connection to the database file — beside the running
//! server, not through it and not through `<db>.lock`, which `serve` holds — and copies it with
//! `VACUUM INTO` inside one read transaction, so the copy holds exactly the transactions committed
//! when it started, WAL included. The copy is written under a temporary name next to DEST, turned
//! into a rollback-journal database (one file, no `-wal` needed), checked with
//! `PRAGMA integrity_check`, fsynced, and only then given its name. A failed snapshot leaves no
//! file behind.
//!
//! It must never: write to the source database, overwrite an existing file, or delete a file that
//! is not one of its own `hookrelay-<UTC time>.db` snapshots.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::store::wal_path;

/// How long the snapshot's read transaction waits for a lock (e.g. a WAL reset in progress).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// File names of scheduled snapshots: `hookrelay-20260125T030000Z.db`, or with milliseconds
/// (`hookrelay-20260125T030000.123Z.db`) when a snapshot of that second already exists.
const SCHEDULED_PREFIX: &str = "hookrelay-";
const SCHEDULED_SUFFIX: &str = ".db";
/// The time part of a scheduled name, to the second and to the millisecond.
const NAME_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
const NAME_TIME_FORMAT_MILLIS: &str = "%Y%m%dT%H%M%S%.3fZ";

/// Why a backup failed. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// DEST names the live database.
    #[error(
        "the backup destination {} is the database itself; choose another file",
        path.display()
    )]
    SameAsDatabase { path: PathBuf },
    /// DEST is already there.
    #[error(
        "{} already exists; a backup never overwrites a file: choose a new name, or move the old file away first",
        path.display()
    )]
    DestinationExists { path: PathBuf },
    /// DEST does not end in a file name (`..`, `/`).
    #[error("the backup destination {} must name a new file", path.display())]
    NotAFile { path: PathBuf },
    /// The database file is missing.
    #[error(
        "there is no database at {}; check database.path in the configuration (or --config)",
        path.display()
    )]
    NoDatabase { path: PathBuf },
    /// `backup.keep` of 0 would delete the snapshot just taken.
    #[error("backup.keep must be at least 1")]
    KeepZero,
    /// SQLite takes file names as UTF-8.
    #[error("{} is not valid UTF-8; choose a path SQLite can name", path.display())]
    NonUtf8Path { path: PathBuf },
    /// The database could not be opened or read.
    #[error("reading the database {}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite found the database damaged (or not a database) while copying it.
    #[error(
        "the database {} is damaged or not a SQLite database; nothing was written — check it \
         with `sqlite3 {} 'PRAGMA integrity_check'` and restore the last good backup",
        path.display(),
        path.display()
    )]
    Damaged {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// `VACUUM INTO` or the check of the copy failed (disk full, permissions, …).
    #[error("writing the snapshot {}", path.display())]
    Copy {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The copy did not pass `PRAGMA integrity_check`; it was deleted.
    #[error(
        "the snapshot of {} failed PRAGMA integrity_check ({report}); it was not kept — \
         run `sqlite3 {} 'PRAGMA integrity_check'` to see whether the database itself is damaged",
        database.display(),
        database.display()
    )]
    Integrity { database: PathBuf, report: String },
    /// A file-system step failed; `action` says which.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The scheduled snapshot was written, but an old one could not be removed.
    #[error(
        "the backup {} was written, but removing the old backup {} failed; remove it by hand \
         or fix the folder's permissions",
        written.display(),
        path.display()
    )]
    Prune {
        written: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl BackupError {
    fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// What a snapshot wrote.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    /// The snapshot file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// The database file plus its WAL when the snapshot started.
    pub source_bytes: u64,
    /// From opening the database to the snapshot having its name.
    pub duration_ms: u64,
    /// The result of `PRAGMA integrity_check` on the copy: always `ok` (anything else is an error).
    pub integrity_check: String,
}

/// Takes a consistent snapshot of the database at `db_path` into the new file `dest`, while
/// `hookrelay serve` may be running and writing. Creates `dest`'s folder if missing.
///
/// # Errors
/// When `dest` exists or is the database, the database is missing or unreadable, the copy cannot
/// be written, or the copy fails `PRAGMA integrity_check`. Nothing is left at `dest` then.
#[tracing::instrument(skip_all, fields(db = %db_path.display(), dest = %dest.display()))]
pub fn snapshot(db_path: &Path, dest: &Path) -> Result<Snapshot, BackupError> {
    let started = Instant::now();
    if !db_path.is_file() {
        return Err(BackupError::NoDatabase {
            path: db_path.to_path_buf(),
        });
    }
    if same_file(db_path, dest) {
        return Err(BackupError::SameAsDatabase {
            path: dest.to_path_buf(),
        });
    }
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let Some(name) = dest.file_name() else {
        return Err(BackupError::NotAFile {
            path: dest.to_path_buf(),
        });
    };
    let dir = parent_dir(dest);
    std::fs::create_dir_all(&dir).map_err(BackupError::io("creating the backup folder", &dir))?;

    let source_bytes = file_len(db_path) + file_len(&wal_path(db_path));
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp-{:016x}", rand::random::<u64>()));
    let tmp_path = dir.join(tmp_name);
    // Created here rather than by SQLite (`VACUUM INTO` accepts an empty file), so that a folder
    // we may not write to is reported as such instead of as "unable to open database file";
    // and only a file created here is ever cleaned up.
    // Mode 0600: a snapshot holds raw Front bodies and sealed secrets, like the database.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(BackupError::io("creating the snapshot file", &tmp_path))?;
    let tmp = TempFile(tmp_path);
    let tmp_str = tmp.0.to_str().ok_or_else(|| BackupError::NonUtf8Path {
        path: tmp.0.clone(),
    })?;

    copy_into(db_path, tmp_str)?;
    check_copy(db_path, &tmp.0)?;
    File::open(&tmp.0)
        .and_then(|f| f.sync_all())
        .map_err(BackupError::io("flushing the snapshot to disk:", &tmp.0))?;
    let bytes = file_len(&tmp.0);
    publish(&tmp.0, dest)?;
    sync_dir(&dir)?;
    drop(tmp);

    let snapshot = Snapshot {
        path: dest.to_path_buf(),
        bytes,
        source_bytes,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        integrity_check: "ok".into(),
    };
    tracing::info!(
        bytes,
        source_bytes,
        duration_ms = snapshot.duration_ms,
        "database snapshot written"
    );
    Ok(snapshot)
}

/// Copies the committed state of the database into the new file `into` in one read transaction.
fn copy_into(db_path: &Path, into: &str) -> Result<(), BackupError> {
    let source = |source| BackupError::Source {
        path: db_path.to_path_buf(),
        source,
    };
    // Read-only, and without URI names, so that neither the database nor DEST is ever
    // interpreted as anything but a plain file name.
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(source)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(source)?;
    conn.execute("VACUUM INTO ?1", [into]).map_err(|e| {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseCorrupt | C::NotADatabase) => BackupError::Damaged {
                path: db_path.to_path_buf(),
                source: e,
            },
            _ => BackupError::Copy {
                path: PathBuf::from(into),
                source: e,
            },
        }
    })?;
    conn.close().map_err(|(_, e)| source(e))
}

/// Makes the copy a rollback-journal database (one self-contained file, whatever the source's
/// journal mode) and checks it.
fn check_copy(db_path: &Path, copy: &Path) -> Result<(), BackupError> {
    let err = |source| BackupError::Copy {
        path: copy.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        copy,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(err)?;
    let report: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(err)?;
    conn.close().map_err(|(_, e)| err(e))?;
    if report.len() == 1 && report[0] == "ok" {
        Ok(())
    } else {
        Err(BackupError::Integrity {
            database: db_path.to_path_buf(),
            report: report.join("; "),
        })
    }
}

/// Gives the finished copy its name without ever replacing a file that appeared there meanwhile:
/// a hard link fails when the name is taken, where a rename would silently overwrite.
fn publish(tmp: &Path, dest: &Path) -> Result<(), BackupError> {
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => {
            // The snapshot is in place; a temporary name left behind is only untidy, and the
            // guard tries again.
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(BackupError::DestinationExists {
            path: dest.to_path_buf(),
        }),
        // File systems without hard links: check, then rename.
        Err(_) => {
            if dest.symlink_metadata().is_ok() {
                return Err(BackupError::DestinationExists {
                    path: dest.to_path_buf(),
                });
            }
            std::fs::rename(tmp, dest).map_err(BackupError::io("naming the snapshot", dest))
        }
    }
}

/// Makes the new directory entry durable (the file's own data was synced before).
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io("flushing the backup folder to disk:", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Removes the temporary copy (and any journal SQLite left beside it) when dropped: on every
/// error path, and after a successful snapshot, where the copy already has its final name.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        for suffix in ["", "-journal", "-wal", "-shm"] {
            let mut p = self.0.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(p));
        }
    }
}

/// Whether `dest` names the database file (through any relative path or symlinked folder).
fn same_file(db_path: &Path, dest: &Path) -> bool {
    let Ok(db) = db_path.canonicalize() else {
        return false;
    };
    if let Ok(d) = dest.canonicalize() {
        return d == db;
    }
    match (parent_dir(dest).canonicalize(), dest.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name) == db,
        _ => false,
    }
}

/// The folder a file is in; `.` for a bare file name.
fn parent_dir(path: &Path) -> PathBuf {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// A file's size, 0 when it is missing.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// What the `backup` cron did.
#[derive(Debug, Serialize)]
pub struct ScheduledBackup {
    /// The new snapshot.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// How long the snapshot took.
    pub duration_ms: u64,
    /// Older snapshots deleted so that `backup.keep` remain, oldest first.
    pub removed: Vec<PathBuf>,
}

impl ScheduledBackup {
    /// For the cron's run record: one snapshot written.
    #[must_use]
    pub fn rows_affected(&self) -> u64 {
        1
    }
}

/// The `backup` cron: a snapshot into `dir/hookrelay-<UTC time>.db`, then the oldest snapshots
/// of that name pattern removed so that `keep` remain. Other files in `dir` are never touched.
///
/// # Errors
/// As [`snapshot`]; [`BackupError::KeepZero`] for `keep == 0`; [`BackupError::Prune`] when the
/// snapshot was written but an old one could not be removed.
#[tracing::instrument(skip_all, fields(dir = %dir.display(), keep))]
pub fn scheduled(db_path: &Path, dir: &Path, keep: u32) -> Result<ScheduledBackup, BackupError> {
    if keep == 0 {
        return Err(BackupError::KeepZero);
    }
    let name = next_scheduled_name(Utc::now(), &list_names(dir, false)?);
    let snap = snapshot(db_path, &dir.join(&name))?;

    // Regular files only: a symlink or folder of a matching name is not ours to delete.
    let names = list_names(dir, true)?;
    let mut removed = Vec::new();
    for name in to_prune(names, keep as usize, &name) {
        let path = dir.join(&name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Someone else removed it meanwhile: the goal is met.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(BackupError::Prune {
                    written: snap.path,
                    path,
                    source,
                });
            }
        }
    }
    if !removed.is_empty() {
        tracing::info!(removed = removed.len(), "old backups removed");
    }
    Ok(ScheduledBackup {
        path: snap.path,
        bytes: snap.bytes,
        duration_ms: snap.duration_ms,
        removed,
    })
}

/// The file names in `dir` (none when it does not exist yet), or only those of regular files.
fn list_names(dir: &Path, regular_files_only: bool) -> Result<Vec<String>, BackupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io("listing the backup folder", dir)(e)),
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| !regular_files_only || e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// The name for a snapshot taken `now`: to the second, or to the millisecond when `existing`
/// already holds a snapshot of that second. (Checking for any snapshot of the second, not just
/// the plain name, keeps a later snapshot from taking back a pruned plain name, which would sort
/// before the millisecond names of its second.)
fn next_scheduled_name(now: DateTime<Utc>, existing: &[String]) -> String {
    let plain = scheduled_name(now, false);
    let second = scheduled_key(&plain).map(|(s, _)| s);
    let taken = existing
        .iter()
        .any(|n| scheduled_key(n).map(|(s, _)| s) == second);
    if taken {
        scheduled_name(now, true)
    } else {
        plain
    }
}

/// `hookrelay-20260125T030000Z.db`, or with `.123` milliseconds before the `Z`.
fn scheduled_name(at: DateTime<Utc>, millis: bool) -> String {
    let format = if millis {
        NAME_TIME_FORMAT_MILLIS
    } else {
        NAME_TIME_FORMAT
    };
    format!("{SCHEDULED_PREFIX}{}{SCHEDULED_SUFFIX}", at.format(format))
}

/// The time in a scheduled snapshot's name as a sort key (`yyyymmddThhmmss`, milliseconds), or
/// `None` when `name` is not one of ours. A name without milliseconds sorts before the names
/// with milliseconds of the same second: those are only made when it already existed.
fn scheduled_key(name: &str) -> Option<(&str, Option<u16>)> {
    let time = name
        .strip_prefix(SCHEDULED_PREFIX)?
        .strip_suffix(SCHEDULED_SUFFIX)?
        .strip_suffix('Z')?;
    let (seconds, millis) = match time.split_once('.') {
        Some((s, ms)) if ms.len() == 3 && ms.bytes().all(|b| b.is_ascii_digit()) => {
            (s, Some(ms.parse().ok()?))
        }
        Some(_) => return None,
        None => (time, None),
    };
    let b = seconds.as_bytes();
    let shape_ok = b.len() == 15
        && b[8] == b'T'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit);
    shape_ok.then_some((seconds, millis))
}

/// The scheduled snapshots among `names` to delete so that `keep` remain, counting `newest` (the
/// one just written), oldest first. `newest` itself is never chosen, even if a clock set back
/// made its name sort first; names of any other shape are never chosen.
fn to_prune(names: impl IntoIterator<Item = String>, keep: usize, newest: &str) -> Vec<String> {
    let mut older: Vec<String> = names
        .into_iter()
        .filter(|n| n != newest && scheduled_key(n).is_some())
        .collect();
    older.sort_by(|a, b| scheduled_key(a).cmp(&scheduled_key(b)));
    let excess = older.len().saturating_sub(keep.saturating_sub(1));
    older.truncate(excess);
    older
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn names_are_utc_to_the_second_or_millisecond() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 25, 3, 4, 5)
            .single()
            .expect("time")
            + chrono::Duration::milliseconds(7);
        assert_eq!(scheduled_name(at, false), "hookrelay-20260125T030405Z.db");
        assert_eq!(
            scheduled_name(at, true),
            "hookrelay-20260125T030405.007Z.db"
        );
        for millis in [false, true] {
            assert!(scheduled_key(&scheduled_name(at, millis)).is_some());
        }
    }

    #[test]
    fn only_our_names_are_recognised() {
        for (name, ours) in [
            ("hookrelay-20260125T030405Z.db", true),
            ("hookrelay-20260125T030405.123Z.db", true),
            ("hookrelay-20260125T030405Z.db.tmp-0123456789abcdef", false),
            ("hookrelay-20260125T030405.12Z.db", false),
            ("hookrelay-20260125T030405.1234Z.db", false),
            ("hookrelay-20260125T030405.abcZ.db", false),
            ("hookrelay-20260125-030405Z.db", false),
            ("hookrelay-2026012T030405Z.db", false),
            ("hookrelay-20260125T030405.db", false),
            ("hookrelay-20260125T030405Z.sqlite", false),
            ("hookrelay.db", false),
            ("hookrelay-manual.db", false),
            ("my-hookrelay-20260125T030405Z.db", false),
            ("hookrelay-２0260125T030405Z.db", false),
            ("", false),
        ] {
            assert_eq!(scheduled_key(name).is_some(), ours, "{name}");
        }
    }

    #[test]
    fn pruning_keeps_the_newest_and_ignores_other_files() {
        let newest = "hookrelay-20260104T030000Z.db";
        let all = names(&[
            "hookrelay-20260103T030000Z.db",
            "notes.txt",
            "hookrelay-20260101T030000Z.db",
            "hookrelay-manual.db",
            "hookrelay-20260102T030000.500Z.db",
            "hookrelay-20260102T030000Z.db",
            "hookrelay-20260104T030000Z.db.tmp-00000000000000ff",
            newest,
        ]);
        for (keep, pruned) in [
            (
                1,
                &[
                    "hookrelay-20260101T030000Z.db",
                    "hookrelay-20260102T030000Z.db",
                    "hookrelay-20260102T030000.500Z.db",
                    "hookrelay-20260103T030000Z.db",
                ][..],
            ),
            (
                2,
                &[
                    "hookrelay-20260101T030000Z.db",
                    "hookrelay-20260102T030000Z.db",
                    "hookrelay-20260102T030000.500Z.db",
                ][..],
            ),
            (4, &["hookrelay-20260101T030000Z.db"][..]),
            (5, &[][..]),
            (100, &[][..]),
            // Not reachable through `scheduled` (it refuses 0), and still keeps the new one.
            (
                0,
                &[
                    "hookrelay-20260101T030000Z.db",
                    "hookrelay-20260102T030000Z.db",
                    "hookrelay-20260102T030000.500Z.db",
                    "hookrelay-20260103T030000Z.db",
                ][..],
            ),
        ] {
            assert_eq!(
                to_prune(all.clone(), keep, newest),
                names(pruned),
                "keep {keep}"
            );
        }
        assert!(to_prune(Vec::new(), 1, newest).is_empty());
    }

    #[test]
    fn the_snapshot_just_written_is_never_pruned() {
        // The clock was set back: the new snapshot's name sorts before the older ones.
        let newest = "hookrelay-20250101T000000Z.db";
        let all = names(&[
            "hookrelay-20260101T030000Z.db",
            "hookrelay-20260102T030000Z.db",
            newest,
        ]);
        assert_eq!(
            to_prune(all, 2, newest),
            names(&["hookrelay-20260101T030000Z.db"])
        );
    }

    #[test]
    fn a_name_without_millis_is_older_than_the_same_second_with_millis() {
        let all = names(&[
            "hookrelay-20260102T030000.001Z.db",
            "hookrelay-20260102T030000Z.db",
            "hookrelay-20260102T030001Z.db",
        ]);
        assert_eq!(
            to_prune(all, 2, "hookrelay-20260102T030001Z.db"),
            names(&["hookrelay-20260102T030000Z.db"])
        );
    }

    #[test]
    fn millis_are_added_while_any_snapshot_of_that_second_exists() {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 2, 3, 0, 0)
            .single()
            .expect("time")
            + chrono::Duration::milliseconds(42);
        for (existing, want) in [
            (&[][..], "hookrelay-20260102T030000Z.db"),
            (
                &["hookrelay-20260102T025959Z.db", "notes.txt"][..],
                "hookrelay-20260102T030000Z.db",
            ),
            (
                &["hookrelay-20260102T030000Z.db"][..],
                "hookrelay-20260102T030000.042Z.db",
            ),
            // The plain name was pruned, a millisecond one of the same second is left.
            (
                &["hookrelay-20260102T030000.001Z.db"][..],
                "hookrelay-20260102T030000.042Z.db",
            ),
        ] {
            assert_eq!(
                next_scheduled_name(at, &names(existing)),
                want,
                "{existing:?}"
            );
        }
    }

    /// A WAL database whose rows are still in the WAL: the returned connection keeps it open,
    /// so nothing is checkpointed into the main file before the snapshot.
    fn sample_db(dir: &Path) -> (PathBuf, Connection) {
        let path = dir.join("src.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(
            "PRAGMA user_version = 3;
             CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO t (v) VALUES ('a'), ('b'), ('c');",
        )
        .expect("schema");
        (path, conn)
    }

    #[test]
    fn snapshot_is_a_checked_single_file_with_the_wal_contents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _conn) = sample_db(dir.path());
        assert!(file_len(&wal_path(&db)) > 0, "rows are in the WAL");
        let dest = dir.path().join("new/sub/copy.db");
        let snap = snapshot(&db, &dest).expect("snapshot");
        assert_eq!(snap.path, dest);
        assert_eq!(snap.bytes, file_len(&dest));
        assert_eq!(snap.integrity_check, "ok");

        // Only the snapshot is left in its folder: no temporary file, journal or WAL.
        let left: Vec<_> = std::fs::read_dir(dest.parent().expect("parent"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("copy.db")]);

        let conn = Connection::open_with_flags(&dest, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open copy");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "delete");
        let (rows, version): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM t), (SELECT user_version FROM pragma_user_version)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("count");
        assert_eq!((rows, version), (3, 3));
    }

    #[test]
    fn snapshot_refuses_an_existing_destination_and_the_database_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _conn) = sample_db(dir.path());
        let dest = dir.path().join("taken.db");
        std::fs::write(&dest, b"precious").expect("write");
        let err = snapshot(&db, &dest).expect_err("exists");
        assert!(
            matches!(err, BackupError::DestinationExists { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&dest).expect("read"), b"precious");

        let same = dir.path().join(".").join("src.db");
        let err = snapshot(&db, &same).expect_err("same");
        assert!(matches!(err, BackupError::SameAsDatabase { .. }), "{err}");

        let err = snapshot(&dir.path().join("missing.db"), &dir.path().join("x.db"))
            .expect_err("missing");
        assert!(matches!(err, BackupError::NoDatabase { .. }), "{err}");
        assert!(!dir.path().join("x.db").exists());
    }

    #[test]
    fn a_failed_snapshot_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("damaged.db");
        let conn = Connection::open(&db).expect("open");
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
             INSERT INTO t (v) SELECT printf('%0200d', i) FROM n;",
        )
        .expect("fill");
        drop(conn);
        // Overwrite a few pages in the middle of the table's b-tree.
        let mut bytes = std::fs::read(&db).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid..mid + 3 * 4096].fill(0xA5);
        std::fs::write(&db, bytes).expect("write");

        let out = dir.path().join("out");
        let err = snapshot(&db, &out.join("copy.db")).expect_err("damaged");
        assert!(
            matches!(
                err,
                BackupError::Damaged { .. } | BackupError::Integrity { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("integrity_check"), "{err}");
        let left: Vec<_> = std::fs::read_dir(&out)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn scheduled_keeps_the_newest_and_leaves_other_files_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, _conn) = sample_db(dir.path());
        let backups = dir.path().join("backups");
        std::fs::create_dir_all(&backups).expect("mkdir");
        for name in [
            "hookrelay-20200101T000000Z.db",
            "hookrelay-20200102T000000Z.db",
            "hookrelay-20200103T000000.250Z.db",
            "keep-me.db",
            "hookrelay-20200101T000000Z.db.tmp-0000000000000001",
        ] {
            std::fs::write(backups.join(name), b"x").expect("write");
        }
        std::os::unix::fs::symlink(&db, backups.join("hookrelay-20190101T000000Z.db"))
            .expect("symlink");

        let first = scheduled(&db, &backups, 2).expect("backup");
        assert_eq!(first.rows_affected(), 1);
        assert_eq!(
            first.removed,
            vec![
                backups.join("hookrelay-20200101T000000Z.db"),
                backups.join("hookrelay-20200102T000000Z.db"),
            ]
        );
        let second = scheduled(&db, &backups, 2).expect("backup");
        assert_ne!(first.path, second.path);
        assert_eq!(
            second.removed,
            vec![backups.join("hookrelay-20200103T000000.250Z.db")]
        );
        let mut left: Vec<String> = std::fs::read_dir(&backups)
            .expect("list")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        left.sort();
        let mut want = vec![
            "hookrelay-20190101T000000Z.db".to_string(),
            "hookrelay-20200101T000000Z.db.tmp-0000000000000001".to_string(),
            "keep-me.db".to_string(),
            first
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_string(),
            second
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("name")
                .to_string(),
        ];
        want.sort();
        assert_eq!(left, want);
        assert!(matches!(
            scheduled(&db, &backups, 0),
            Err(BackupError::KeepZero)
        ));
    }
}
