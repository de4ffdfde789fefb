//! The `kv` table: small named values the service keeps between runs (the `front_sync` cursor,
//! the readiness probe's row). Its owner is the store; callers name their keys.

use crate::sql::{Connection, OptionalExtension as _, params};

use super::WriteTx;
use crate::clock;

/// The value of `key`, if set.
///
/// # Errors
/// A database error.
pub fn get(conn: &Connection, key: &str) -> crate::sql::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

/// Sets `key` to `value` in the caller's transaction.
///
/// # Errors
/// A database error.
pub fn set(tx: &WriteTx<'_>, key: &str, value: &str) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "INSERT INTO kv (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![key, value, clock::now_ms()])?;
    Ok(())
}
