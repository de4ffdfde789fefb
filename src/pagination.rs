//! Cursor pagination shared by every list endpoint: `limit` (default 50, max 500) and an
//! opaque `cursor`; answers carry `next_cursor` (`null` on the last page).
//!
//! Lists are ordered newest first by id (ids are ULIDs, so by creation time); the cursor is the
//! last id of the page, and the next page holds ids below it.

use serde::Deserialize;

use crate::error::ApiError;

/// Items per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 500;

/// The `limit` and `cursor` query parameters.
///
/// `limit` is read as text: list queries flatten this struct into their own, and serde's
/// `flatten` hands numbers from a query string over as strings.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size asked for.
    ///
    /// # Errors
    /// 400 `invalid_query` when `limit` is 0 or above [`MAX_LIMIT`].
    pub fn limit(&self) -> Result<usize, ApiError> {
        let Some(raw) = self.limit.as_deref().filter(|l| !l.is_empty()) else {
            return Ok(DEFAULT_LIMIT);
        };
        match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be a number between 1 and {MAX_LIMIT}, not `{raw}`"),
            )),
        }
    }

    /// The cursor, if any (an empty one counts as none).
    #[must_use]
    pub fn cursor(&self) -> Option<String> {
        self.cursor.clone().filter(|c| !c.is_empty())
    }
}

/// A list filter that must be one of `allowed`: an empty value counts as absent, anything else
/// is 400 `invalid_query` naming the choices.
///
/// # Errors
/// 400 `invalid_query` for a value not in `allowed`.
pub fn one_of(
    name: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(
            "invalid_query",
            format!("{name} must be one of {}; not `{v}`", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

/// Trims a result fetched with `limit + 1` rows to `limit` and computes the next cursor.
pub fn finish<T>(
    mut items: Vec<T>,
    limit: usize,
    id_of: impl Fn(&T) -> &str,
) -> (Vec<T>, Option<String>) {
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(|i| id_of(i).to_string());
        (items, next)
    } else {
        (items, None)
    }
}

/// A newest-first list query built from the filters actually given — `WHERE a = ? AND b = ?
/// ORDER BY id DESC LIMIT ?` — so SQLite can use the index of whichever filter is present
/// (an `(? IS NULL OR a = ?)` form would defeat it).
#[derive(Default)]
pub struct ListQuery<'a> {
    clauses: Vec<&'static str>,
    args: Vec<&'a dyn crate::sql::Param>,
}

impl<'a> ListQuery<'a> {
    /// No filters yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `clause` (with one `?`) when `value` is present.
    #[must_use]
    pub fn filter<T: crate::sql::Param>(
        mut self,
        clause: &'static str,
        value: &'a Option<T>,
    ) -> Self {
        if let Some(v) = value {
            self.clauses.push(clause);
            self.args.push(v);
        }
        self
    }

    /// Adds an `action` filter (exact, or a `prefix.*` as an index range).
    #[must_use]
    pub fn action(self, f: &'a ActionFilter) -> Self {
        self.filter("action = ?", &f.exact)
            .filter("action >= ?", &f.from)
            .filter("action < ?", &f.to)
    }

    /// Runs `SELECT {columns} FROM {table} [WHERE …] ORDER BY id DESC LIMIT {limit}`.
    ///
    /// # Errors
    /// A database error.
    pub fn run<T>(
        self,
        conn: &crate::sql::Connection,
        columns: &str,
        table: &str,
        limit: usize,
        map: impl FnMut(&crate::sql::Row<'_>) -> crate::sql::Result<T>,
    ) -> crate::sql::Result<Vec<T>> {
        let where_sql = if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut args = self.args;
        args.push(&limit);
        let sql = format!("SELECT {columns} FROM {table} {where_sql} ORDER BY id DESC LIMIT ?");
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(args.as_slice(), map)?;
        rows.collect()
    }
}

/// An `action` filter of a list: an exact action, or a prefix ending in `.*` (`app.user.*`
/// matches `app.user.created` but not `app.username.x`), kept as a range so an index serves it.
#[derive(Debug, Default, Clone)]
pub struct ActionFilter {
    exact: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

impl ActionFilter {
    /// The filter for `?action=`; empty or absent matches everything.
    #[must_use]
    pub fn parse(action: Option<&str>) -> Self {
        match action.map(str::trim).filter(|a| !a.is_empty()) {
            Some("*") | None => Self::default(),
            Some(a) => match a.strip_suffix(".*") {
                Some(prefix) => Self {
                    exact: None,
                    from: Some(format!("{prefix}.")),
                    to: Some(format!("{prefix}.\u{10ffff}")),
                },
                None => Self {
                    exact: Some(a.to_string()),
                    from: None,
                    to: None,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_bounds() {
        let q = |limit: Option<&str>| PageQuery {
            limit: limit.map(String::from),
            cursor: None,
        };
        assert_eq!(q(None).limit().ok(), Some(DEFAULT_LIMIT));
        assert_eq!(q(Some("500")).limit().ok(), Some(500));
        assert!(q(Some("0")).limit().is_err());
        assert!(q(Some("501")).limit().is_err());
        assert!(q(Some("ten")).limit().is_err());
    }

    #[test]
    fn next_cursor_only_when_more() {
        let (items, next) = finish(vec!["c", "b", "a"], 2, |s| s);
        assert_eq!((items, next), (vec!["c", "b"], Some("b".to_string())));
        let (items, next) = finish(vec!["c", "b"], 2, |s| s);
        assert_eq!((items, next), (vec!["c", "b"], None));
    }
}
