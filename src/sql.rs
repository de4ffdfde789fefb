//! One query interface over both databases: a [`Connection`] is a SQLite connection or a
//! PostgreSQL one, and the owners' store functions prepare, bind and read rows through it
//! without knowing which (rusqlite's shape: `prepare_cached`, `execute`, `query_row`,
//! `query_map`, `optional`).
//!
//! Statements are written with SQLite's numbered placeholders (`?1`, `?2`, or bare `?` in
//! order); on PostgreSQL they are rewritten to `$1`, `$2` once, when first prepared on a
//! connection. A query whose text must differ between the two (a SQLite-only function, a cast
//! PostgreSQL needs) picks its text with [`Connection::dialect`], the two versions side by side.
//!
//! Values cross as [`Value`]: integers, reals, text, bytes and NULL — the storage classes of
//! SQLite, which the PostgreSQL schema maps to `BIGINT`, `DOUBLE PRECISION`, `TEXT` and `BYTEA`.
//! Binding converts an integer to the width the PostgreSQL parameter has (a `LIMIT` is
//! `BIGINT`, a `boolean` comparison takes 0/1), so callers bind `u32`, `usize` or `bool` as
//! they hold them.
//!
//! The PostgreSQL side is a tokio-postgres session driven on its own small runtime and used
//! blockingly ([`PgClient`]), so that both databases are used the same way: from the writer
//! thread and from blocking tasks holding a pooled connection, never from the async threads.
//! In the writer's batches it pipelines: [`Statement::execute_later`] queues a write whose
//! answer nobody reads, and the next statement that needs an answer sends the queue ahead of
//! itself, one round trip for all.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use postgres::types::{FromSql, IsNull, ToSql, Type};

/// Which database a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A query failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{}", postgres_message(.0))]
    Postgres(#[from] postgres::Error),
    /// `query_row` found no row ([`OptionalExtension::optional`] turns it into `None`).
    #[error("the query returned no row")]
    NoRow,
    /// A PostgreSQL session's runtime could not start.
    #[error("starting a PostgreSQL session: {0}")]
    Runtime(std::io::Error),
    /// A column held a value the caller's type cannot take.
    #[error("column {index}: {message}")]
    Column { index: usize, message: String },
}

/// PostgreSQL's own message with its detail (the constraint a row broke), without the
/// "db error:" prefix tokio-postgres puts before it.
fn postgres_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

impl Error {
    /// Whether a `UNIQUE` (or primary-key) constraint refused the row.
    #[must_use]
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => {
                f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Self::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    /// The database's message for a failed statement (the constraint a row broke), if any.
    #[must_use]
    pub fn database_message(&self) -> Option<String> {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(_, Some(msg))) => Some(msg.clone()),
            Self::Postgres(e) => e.as_db_error().map(|_| postgres_message(e)),
            _ => None,
        }
    }
}

/// The result of a query.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `query_row(…).optional()`: no row is `None` rather than an error.
pub trait OptionalExtension<T> {
    /// `Ok(None)` when the query found no row.
    ///
    /// # Errors
    /// Any other error.
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::NoRow) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Int(_) => "an integer",
            Self::Real(_) => "a real",
            Self::Text(_) => "text",
            Self::Blob(_) => "bytes",
        }
    }
}

/// Something that binds as one statement parameter.
pub trait Param {
    fn value(&self) -> Value<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl Param for $t {
            fn value(&self) -> Value<'_> {
                // Ids, counts and milliseconds: never near i64::MAX.
                Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_param!(i8, i16, i32, i64, u8, u16, u32, u64, usize, isize);

impl Param for bool {
    fn value(&self) -> Value<'_> {
        Value::Int(i64::from(*self))
    }
}
impl Param for f64 {
    fn value(&self) -> Value<'_> {
        Value::Real(*self)
    }
}
impl Param for str {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for String {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for std::sync::Arc<str> {
    fn value(&self) -> Value<'_> {
        Value::Text(self)
    }
}
impl Param for [u8] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl Param for Vec<u8> {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<const N: usize> Param for [u8; N] {
    fn value(&self) -> Value<'_> {
        Value::Blob(self)
    }
}
impl<T: Param + ?Sized> Param for &T {
    fn value(&self) -> Value<'_> {
        (**self).value()
    }
}
impl<T: Param> Param for Option<T> {
    fn value(&self) -> Value<'_> {
        self.as_ref().map_or(Value::Null, Param::value)
    }
}
impl Param for Value<'_> {
    fn value(&self) -> Value<'_> {
        *self
    }
}

/// A statement's parameters: `params![a, b]`, `[a]`, `[]`, or a slice of `&dyn Param`.
pub trait Params {
    fn values(&self) -> Vec<Value<'_>>;
}

impl Params for &[&dyn Param] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl Params for Vec<&dyn Param> {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl<const N: usize> Params for &[&dyn Param; N] {
    fn values(&self) -> Vec<Value<'_>> {
        self.iter().map(|p| p.value()).collect()
    }
}
impl Params for [&dyn Param; 0] {
    fn values(&self) -> Vec<Value<'_>> {
        Vec::new()
    }
}
macro_rules! array_params {
    ($($n:literal)*) => {$(
        impl<T: Param> Params for [T; $n] {
            fn values(&self) -> Vec<Value<'_>> {
                self.iter().map(Param::value).collect()
            }
        }
    )*};
}
array_params!(1 2 3 4 5 6 7 8);

/// Parameters from an iterator (a variable `IN (…)` list).
pub struct ParamsFromIter<T>(pub Vec<T>);

impl<T: Param> Params for ParamsFromIter<T> {
    fn values(&self) -> Vec<Value<'_>> {
        self.0.iter().map(Param::value).collect()
    }
}

/// `params_from_iter(ids)`: each item one parameter, in order.
pub fn params_from_iter<T: Param>(items: impl IntoIterator<Item = T>) -> ParamsFromIter<T> {
    ParamsFromIter(items.into_iter().collect())
}

/// `params![a, b, c]`: a statement's parameters, of any [`Param`] types.
#[macro_export]
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::sql::Param]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::sql::Param),+] as &[&dyn $crate::sql::Param]
    };
}
pub use crate::params;

/// A type a column reads into.
pub trait FromColumn: Sized {
    /// # Errors
    /// When the value is not of this type (the message says what it was).
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

fn wrong(v: Value<'_>, want: &str) -> String {
    format!("expected {want}, found {}", v.kind())
}

macro_rules! int_column {
    ($($t:ty),*) => {$(
        impl FromColumn for $t {
            fn from_value(v: Value<'_>) -> Result<Self, String> {
                match v {
                    Value::Int(i) => <$t>::try_from(i)
                        .map_err(|_| format!("{i} is out of range for {}", stringify!($t))),
                    other => Err(wrong(other, "an integer")),
                }
            }
        }
    )*};
}
int_column!(i32, i64, u8, u16, u32, u64, usize);

impl FromColumn for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i != 0),
            other => Err(wrong(other, "an integer")),
        }
    }
}
impl FromColumn for f64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Ok(i as f64),
            other => Err(wrong(other, "a number")),
        }
    }
}
impl FromColumn for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s.to_string()),
            other => Err(wrong(other, "text")),
        }
    }
}
impl FromColumn for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b.to_vec()),
            other => Err(wrong(other, "bytes")),
        }
    }
}
impl<T: FromColumn> FromColumn for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A column position (only `usize`, so that a literal `0` needs no suffix).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One row of a result.
pub struct Row<'r>(RowInner<'r>);

enum RowInner<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r postgres::Row),
}

impl Row<'_> {
    /// Column `index` (from 0) as `T`.
    ///
    /// # Errors
    /// When the column does not exist or its value is not a `T`.
    pub fn get<I: RowIndex, T: FromColumn>(&self, index: I) -> Result<T> {
        let index = index.index();
        let column = |message: String| Error::Column { index, message };
        match &self.0 {
            RowInner::Sqlite(r) => {
                let v = r.get_ref(index)?;
                T::from_value(from_sqlite(v).map_err(column)?).map_err(column)
            }
            RowInner::Postgres(r) => {
                let v: Value<'_> = r.try_get(index)?;
                T::from_value(v).map_err(column)
            }
        }
    }
}

fn from_sqlite(v: rusqlite::types::ValueRef<'_>) -> Result<Value<'_>, String> {
    use rusqlite::types::ValueRef as V;
    Ok(match v {
        V::Null => Value::Null,
        V::Integer(i) => Value::Int(i),
        V::Real(f) => Value::Real(f),
        V::Text(t) => Value::Text(std::str::from_utf8(t).map_err(|e| e.to_string())?),
        V::Blob(b) => Value::Blob(b),
    })
}

impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Null => V::Null,
            Self::Int(i) => V::Integer(i),
            Self::Real(f) => V::Real(f),
            Self::Text(s) => V::Text(s.as_bytes()),
            Self::Blob(b) => V::Blob(b),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value<'_> {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        match *self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                #[allow(clippy::cast_precision_loss)]
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            },
            Self::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                #[allow(clippy::cast_possible_truncation)]
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                _ => Err(format!("a real cannot be bound to a {ty} parameter").into()),
            },
            Self::Text(s) => match *ty {
                Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                    s.to_sql(ty, out)
                }
                _ => Err(format!("text cannot be bound to a {ty} parameter").into()),
            },
            Self::Blob(b) => match *ty {
                Type::BYTEA => b.to_sql(ty, out),
                _ => Err(format!("bytes cannot be bound to a {ty} parameter").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

impl<'a> FromSql<'a> for Value<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Self::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Self::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Self::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Self::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Self::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Self::Real(f32::from_sql(ty, raw)?.into()),
            Type::BYTEA => Self::Blob(<&[u8]>::from_sql(ty, raw)?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                Self::Text(<&str>::from_sql(ty, raw)?)
            }
            _ => return Err(format!("a {ty} column (cast it to BIGINT or TEXT)").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Self::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A connection to either database.
pub struct Connection(Inner);

enum Inner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConnection>),
}

/// A PostgreSQL client with its prepared statements, keyed by the SQLite-dialect text.
pub struct PgConnection {
    /// How to connect again when the session is lost (the writer's connection).
    reconnect: Option<tokio_postgres::Config>,
    client: RefCell<PgClient>,
    /// Whether [`Statement::execute_later`] queues (the writer's batches) or runs at once.
    deferring: std::cell::Cell<bool>,
    /// Statements queued by [`Statement::execute_later`], sent with the next round trip.
    deferred: RefCell<Vec<Deferred>>,
    /// A queued statement failed since [`Connection::take_deferred_failure`] last asked.
    deferred_failed: std::cell::Cell<bool>,
    /// Each statement with how often it was used (see [`REPLAN_AT`]).
    statements: RefCell<HashMap<String, (postgres::Statement, u64)>>,
    /// The last failure of the database itself a statement met (see [`Connection::take_storage_failure`]).
    storage_failure: RefCell<Option<String>>,
}

impl PgConnection {
    fn new(client: PgClient, reconnect: Option<tokio_postgres::Config>) -> Self {
        Self {
            reconnect,
            client: RefCell::new(client),
            deferring: std::cell::Cell::new(false),
            deferred: RefCell::new(Vec::new()),
            deferred_failed: std::cell::Cell::new(false),
            statements: RefCell::new(HashMap::new()),
            storage_failure: RefCell::new(None),
        }
    }

    /// Runs `then` after the queued statements (sent in the same round trip). A failure of
    /// a queued statement is the answer (and noted: the transaction is lost).
    fn run(&self, then: Then<'_>) -> Result<Answer> {
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        match self.client.borrow_mut().after(&deferred, then) {
            Ok(r) => self.noted(r),
            Err(e) => {
                self.deferred_failed.set(true);
                self.noted(Err(e))
            }
        }
    }

    fn execute(&self, s: &postgres::Statement, args: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        match self.run(Then::Execute(s, args))? {
            Answer::Count(n) => Ok(n),
            Answer::Rows(_) | Answer::Done => Ok(0),
        }
    }

    fn query(
        &self,
        s: &postgres::Statement,
        args: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>> {
        match self.run(Then::Query(s, args))? {
            Answer::Rows(rows) => Ok(rows),
            Answer::Count(_) | Answer::Done => Ok(Vec::new()),
        }
    }

    /// `r`, noting a failure of the database itself (not of the statement).
    fn noted<T>(&self, r: std::result::Result<T, postgres::Error>) -> Result<T> {
        r.map_err(|e| {
            if is_storage_failure(&e) {
                // The server's own words ("db error" alone says nothing).
                let reason = e.as_db_error().map_or_else(
                    || e.to_string(),
                    |d| format!("{} (SQLSTATE {})", d.message(), d.code().code()),
                );
                *self.storage_failure.borrow_mut() = Some(reason);
            }
            Error::Postgres(e)
        })
    }
}

/// Whether `e` says the database cannot take writes now, whatever the statement: the session
/// is gone, or the server is out of disk or memory, shutting down, or read-only (a standby).
fn is_storage_failure(e: &postgres::Error) -> bool {
    use postgres::error::SqlState as S;
    e.is_closed()
        || e.code().is_some_and(|c| {
            [
                S::DISK_FULL,
                S::INSUFFICIENT_RESOURCES,
                S::OUT_OF_MEMORY,
                S::ADMIN_SHUTDOWN,
                S::CRASH_SHUTDOWN,
                S::CANNOT_CONNECT_NOW,
                S::READ_ONLY_SQL_TRANSACTION,
                S::IO_ERROR,
            ]
            .contains(c)
        })
}

/// Uses after which a cached PostgreSQL statement is prepared again. After five runs
/// PostgreSQL may keep one generic plan for a prepared statement, and that plan is made again
/// only when the table's statistics change — which waits for autovacuum's first `ANALYZE`,
/// up to a minute after a table starts to fill. A plan made while the table was empty can be
/// wrong for the rest of that time: measured, the inbound duplicate check picked the
/// `(source, id)` index over the unique `(source, external_id)` one and took 2.5 ms per event
/// at 3,000 rows, where it takes 30 µs. Preparing again at these counts plans with the table's
/// size as it is then (one more round trip, three times per statement).
const REPLAN_AT: [u64; 3] = [1_000, 10_000, 100_000];

/// A PostgreSQL session: a tokio-postgres client driven on its own single-thread runtime,
/// used blockingly (as the `postgres` crate does) — plus pipelining: statements queued with
/// [`Statement::execute_later`] go out together with the next statement that needs an answer,
/// without a round trip each.
///
/// It says goodbye off the async threads: dropping a runtime blocks, which panics on a thread
/// that drives async tasks (a read pool dropped at shutdown).
pub struct PgClient(Option<PgSession>);

struct PgSession {
    client: tokio_postgres::Client,
    /// Drives the connection (the socket) whenever the runtime runs, i.e. while a call waits.
    driver: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Runtime,
}

/// A statement queued for the next round trip, with its parameters.
struct Deferred {
    statement: postgres::Statement,
    values: Vec<OwnedValue>,
}

/// A [`Value`] that owns its text or bytes, for a statement that runs later.
#[derive(Debug, Clone, PartialEq)]
enum OwnedValue {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl OwnedValue {
    fn of(v: &Value<'_>) -> Self {
        match *v {
            Value::Null => Self::Null,
            Value::Int(i) => Self::Int(i),
            Value::Real(f) => Self::Real(f),
            Value::Text(t) => Self::Text(t.to_string()),
            Value::Blob(b) => Self::Blob(b.to_vec()),
        }
    }

    fn value(&self) -> Value<'_> {
        match self {
            Self::Null => Value::Null,
            Self::Int(i) => Value::Int(*i),
            Self::Real(f) => Value::Real(*f),
            Self::Text(t) => Value::Text(t),
            Self::Blob(b) => Value::Blob(b),
        }
    }
}

impl PgClient {
    /// Connects with `config`.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the session.
    pub fn connect(config: &tokio_postgres::Config) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (client, connection) = runtime.block_on(config.connect(postgres::NoTls))?;
        let driver = runtime.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL session ended");
            }
        });
        Ok(Self(Some(PgSession {
            client,
            driver,
            runtime,
        })))
    }

    fn session(&mut self) -> &mut PgSession {
        self.0
            .as_mut()
            .expect("a session is only taken when dropped")
    }

    /// Whether the session is gone (the server closed it, or the socket broke).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.0.as_ref().is_none_or(|s| s.client.is_closed())
    }

    fn prepare(&mut self, sql: &str) -> std::result::Result<postgres::Statement, postgres::Error> {
        let s = self.session();
        s.runtime.block_on(s.client.prepare(sql))
    }

    /// Sends the `deferred` statements, then `then`, in one go, and waits for every answer:
    /// `Err` with the first failure of a deferred statement, else `then`'s result.
    fn after(
        &mut self,
        deferred: &[Deferred],
        then: Then<'_>,
    ) -> std::result::Result<std::result::Result<Answer, postgres::Error>, postgres::Error> {
        use futures_util::future::{MaybeDone, maybe_done};
        use std::pin::Pin;
        use std::task::Poll;

        let s = self.session();
        let client = &s.client;
        if deferred.is_empty() {
            return Ok(s.runtime.block_on(then.send(client)));
        }
        let values: Vec<Vec<Value<'_>>> = deferred
            .iter()
            .map(|d| d.values.iter().map(OwnedValue::value).collect())
            .collect();
        let args: Vec<Vec<&(dyn ToSql + Sync)>> = values.iter().map(|v| pg_args(v)).collect();
        s.runtime.block_on(async {
            // Each request is written when its future is first polled, so all are polled in
            // the order given: the server runs them in that order, one after the other.
            let mut sent: Vec<Pin<Box<MaybeDone<_>>>> = deferred
                .iter()
                .zip(&args)
                .map(|(d, a)| Box::pin(maybe_done(client.execute(&d.statement, a))))
                .collect();
            let mut last = Box::pin(maybe_done(then.send(client)));
            std::future::poll_fn(|cx| {
                let mut done = true;
                for f in &mut sent {
                    done &= f.as_mut().poll(cx).is_ready();
                }
                done &= last.as_mut().poll(cx).is_ready();
                if done { Poll::Ready(()) } else { Poll::Pending }
            })
            .await;
            for f in &mut sent {
                if let Some(Err(e)) = f.as_mut().take_output() {
                    return Err(e);
                }
            }
            Ok(last.as_mut().take_output().expect("every future is done"))
        })
    }
}

/// The statement that goes out after the queued ones.
enum Then<'a> {
    Execute(&'a postgres::Statement, &'a [&'a (dyn ToSql + Sync)]),
    Query(&'a postgres::Statement, &'a [&'a (dyn ToSql + Sync)]),
    Batch(&'a str),
    /// Only the queued ones.
    Nothing,
}

/// What a [`Then`] answered.
enum Answer {
    Count(u64),
    Rows(Vec<postgres::Row>),
    Done,
}

impl<'a> Then<'a> {
    async fn send(
        self,
        client: &tokio_postgres::Client,
    ) -> std::result::Result<Answer, postgres::Error> {
        match self {
            Self::Execute(s, args) => client.execute(s, args).await.map(Answer::Count),
            Self::Query(s, args) => client.query(s, args).await.map(Answer::Rows),
            Self::Batch(sql) => client.batch_execute(sql).await.map(|()| Answer::Done),
            Self::Nothing => Ok(Answer::Done),
        }
    }
}

impl Drop for PgClient {
    fn drop(&mut self) {
        let Some(session) = self.0.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_err() {
            session.close();
            return;
        }
        let closing = std::sync::Arc::new(std::sync::Mutex::new(Some(session)));
        let handed = std::sync::Arc::clone(&closing);
        let spawned = std::thread::Builder::new()
            .name("hookrelay-pg-close".into())
            .spawn(move || {
                if let Some(s) = handed.lock().ok().and_then(|mut s| s.take()) {
                    s.close();
                }
            });
        if spawned.is_err()
            && let Some(session) = closing.lock().ok().and_then(|mut s| s.take())
        {
            // No thread to say goodbye on: let the server notice the closed socket.
            std::mem::forget(session);
        }
    }
}

impl PgSession {
    /// Says goodbye: without its client the connection sends Terminate and ends.
    fn close(self) {
        let Self {
            client,
            driver,
            runtime,
        } = self;
        drop(client);
        // The timer is made inside the runtime (it needs its clock).
        let _ = runtime.block_on(async move {
            tokio::time::timeout(std::time::Duration::from_secs(1), driver).await
        });
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Connection").field(&self.dialect()).finish()
    }
}

impl From<rusqlite::Connection> for Connection {
    fn from(c: rusqlite::Connection) -> Self {
        Self(Inner::Sqlite(c))
    }
}

impl Connection {
    /// A PostgreSQL session opened with `config`; with `reconnect`,
    /// [`Connection::reconnect_if_closed`] opens it again when it is lost (the writer's).
    ///
    /// # Errors
    /// When the server cannot be reached or refuses the session.
    pub fn connect_postgres(config: &tokio_postgres::Config, reconnect: bool) -> Result<Self> {
        let client = PgClient::connect(config)?;
        Ok(Self(Inner::Postgres(Box::new(PgConnection::new(
            client,
            reconnect.then(|| config.clone()),
        )))))
    }
}

impl Connection {
    /// Which database this is.
    #[must_use]
    pub fn dialect(&self) -> Dialect {
        match self.0 {
            Inner::Sqlite(_) => Dialect::Sqlite,
            Inner::Postgres(_) => Dialect::Postgres,
        }
    }

    /// `sqlite` on SQLite, `postgres` on PostgreSQL: a query's two texts side by side.
    #[must_use]
    pub fn dialect_sql<'s>(&self, sqlite: &'s str, postgres: &'s str) -> &'s str {
        match self.dialect() {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    /// Opens a lost PostgreSQL session again (a restarted server, a dropped connection), with
    /// its prepared statements forgotten; whether it did. SQLite connections are never lost.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub fn reconnect_if_closed(&mut self) -> Result<bool> {
        let Inner::Postgres(c) = &mut self.0 else {
            return Ok(false);
        };
        let Some(config) = &c.reconnect else {
            return Ok(false);
        };
        if !c.client.get_mut().is_closed() {
            return Ok(false);
        }
        let client = PgClient::connect(config)?;
        *c.client.get_mut() = client;
        c.statements.get_mut().clear();
        c.deferred.get_mut().clear();
        Ok(true)
    }

    /// The SQLite connection, for what only SQLite has (pragmas, checkpoints, backups).
    #[must_use]
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.0 {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// The SQLite connection itself, to close it and hear why that failed.
    #[must_use]
    pub fn into_sqlite(self) -> Option<rusqlite::Connection> {
        match self.0 {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// The SQLite connection, mutably (migrations).
    pub fn sqlite_mut(&mut self) -> Option<&mut rusqlite::Connection> {
        match &mut self.0 {
            Inner::Sqlite(c) => Some(c),
            Inner::Postgres(_) => None,
        }
    }

    /// The PostgreSQL client, for what only PostgreSQL has (advisory locks, `NOTIFY`).
    #[must_use]
    pub fn postgres(&self) -> Option<&RefCell<PgClient>> {
        match &self.0 {
            Inner::Sqlite(_) => None,
            Inner::Postgres(c) => Some(&c.client),
        }
    }

    /// Prepares `sql` once per connection and reuses it after.
    ///
    /// # Errors
    /// When the statement does not compile.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        match &self.0 {
            Inner::Sqlite(c) => Ok(Statement(StatementInner::Sqlite(c.prepare_cached(sql)?))),
            Inner::Postgres(c) => {
                let uses = match c.statements.borrow_mut().get_mut(sql) {
                    Some((s, uses)) if !REPLAN_AT.contains(&(*uses + 1)) => {
                        *uses += 1;
                        return Ok(Statement(StatementInner::Postgres(c, s.clone())));
                    }
                    Some((_, uses)) => *uses + 1,
                    None => 0,
                };
                // Counted once prepared: a failed prepare is tried again at the next use.
                let s = c.noted(c.client.borrow_mut().prepare(&to_postgres(sql)))?;
                c.statements
                    .borrow_mut()
                    .insert(sql.to_string(), (s.clone(), uses));
                Ok(Statement(StatementInner::Postgres(c, s)))
            }
        }
    }

    /// Runs one statement; returns how many rows it changed.
    ///
    /// # Errors
    /// A database error.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    /// Runs a query expected to return a row, and maps that row.
    ///
    /// # Errors
    /// [`Error::NoRow`] without a row; a database error.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// Runs statements without parameters, separated by `;` (schema steps, `BEGIN`).
    ///
    /// # Errors
    /// A database error.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.0 {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Postgres(c) => c.run(Then::Batch(sql)).map(|_| ()),
        }
    }

    /// Lets [`Statement::execute_later`] queue its statements (`true`: the writer's batches)
    /// or makes it run them at once (`false`, as outside a batch). Only PostgreSQL queues.
    pub fn defer_writes(&self, on: bool) {
        if let Inner::Postgres(c) = &self.0 {
            c.deferring.set(on);
        }
    }

    /// Runs the statements [`Statement::execute_later`] queued (one round trip).
    ///
    /// # Errors
    /// The first failure among them.
    pub fn flush_deferred(&self) -> Result<()> {
        match &self.0 {
            Inner::Postgres(c) if !c.deferred.borrow().is_empty() => {
                c.run(Then::Nothing).map(|_| ())
            }
            _ => Ok(()),
        }
    }

    /// Drops the queued statements unrun (their transaction is being rolled back).
    pub fn discard_deferred(&self) {
        if let Inner::Postgres(c) = &self.0 {
            c.deferred.borrow_mut().clear();
        }
    }

    /// Whether a statement [`Statement::execute_later`] queued failed since the last call:
    /// whichever call sent it saw that failure as its own.
    pub fn take_deferred_failure(&self) -> bool {
        match &self.0 {
            Inner::Postgres(c) => c.deferred_failed.replace(false),
            Inner::Sqlite(_) => false,
        }
    }

    /// Runs `f`'s reads on one snapshot of the database, so that counts read by several
    /// statements agree (a commit between them is seen by all or none). PostgreSQL's
    /// statements outside a transaction each see the latest commit; SQLite's likewise.
    ///
    /// # Errors
    /// `f`'s error, or the transaction's.
    pub fn read_consistently<T>(&self, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.transaction(
            self.dialect_sql(
                "BEGIN DEFERRED",
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            ),
            f,
        )
    }

    /// Runs `f` in a transaction opened with `begin` (a `BEGIN …`, with settings after it):
    /// committed when `f` succeeds, rolled back when it fails. For a transaction outside the
    /// writer's batches.
    ///
    /// # Errors
    /// `f`'s error, or the transaction's.
    pub fn transaction<T>(&self, begin: &str, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.execute_batch(begin)?;
        match f(self) {
            Ok(v) => {
                self.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// The failure of the database itself (not of a statement: the session lost, the disk
    /// full, the server read-only or shutting down) that a statement met since the last call,
    /// if any. On PostgreSQL such a failure ends only the statement, so the writer asks after
    /// each failed command; SQLite's end the transaction or its `BEGIN`, which the writer sees.
    pub fn take_storage_failure(&self) -> Option<String> {
        match &self.0 {
            Inner::Sqlite(_) => None,
            Inner::Postgres(c) => c.storage_failure.borrow_mut().take(),
        }
    }
}

/// A prepared statement.
pub struct Statement<'c>(StatementInner<'c>);

enum StatementInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres(&'c PgConnection, postgres::Statement),
}

impl Statement<'_> {
    /// Runs the statement; returns how many rows it changed.
    ///
    /// # Errors
    /// A database error.
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        let values = params.values();
        match &mut self.0 {
            StatementInner::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(values.iter()))?),
            StatementInner::Postgres(c, s) => {
                let args = pg_args(&values);
                let n = c.execute(s, &args)?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Runs the statement, or on PostgreSQL inside the writer's batch queues it to go out with
    /// the next statement that needs an answer (or the commit), saving a round trip: for
    /// writes whose row count nobody reads. A failure then fails whichever call sends it, and
    /// the writer runs the batch again with each command on its own, where nothing is queued.
    ///
    /// # Errors
    /// A database error (at once on SQLite and outside a batch).
    pub fn execute_later(&mut self, params: impl Params) -> Result<()> {
        match &mut self.0 {
            StatementInner::Postgres(c, s) if c.deferring.get() => {
                let values = params.values().iter().map(OwnedValue::of).collect();
                c.deferred.borrow_mut().push(Deferred {
                    statement: s.clone(),
                    values,
                });
                Ok(())
            }
            _ => self.execute(params).map(|_| ()),
        }
    }

    /// Runs the query and maps its first row.
    ///
    /// # Errors
    /// [`Error::NoRow`] without a row; a database error or `f`'s.
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values();
        match &mut self.0 {
            StatementInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row(RowInner::Sqlite(r))),
                    None => Err(Error::NoRow),
                }
            }
            StatementInner::Postgres(c, s) => {
                let args = pg_args(&values);
                // The first row, as SQLite gives it (`query_opt` refuses a second one).
                let rows = c.query(s, &args)?;
                match rows.first() {
                    Some(r) => f(&Row(RowInner::Postgres(r))),
                    None => Err(Error::NoRow),
                }
            }
        }
    }

    /// Runs the query and maps every row, in order.
    ///
    /// # Errors
    /// A database error; `f`'s errors come with the rows.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let values = params.values();
        let mut out = Vec::new();
        match &mut self.0 {
            StatementInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    out.push(f(&Row(RowInner::Sqlite(r))));
                }
            }
            StatementInner::Postgres(c, s) => {
                let args = pg_args(&values);
                let rows = c.query(s, &args)?;
                out.extend(rows.iter().map(|r| f(&Row(RowInner::Postgres(r)))));
            }
        }
        Ok(out.into_iter())
    }

    /// Whether the query returns a row.
    ///
    /// # Errors
    /// A database error.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        self.query_row(params, |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
    }
}

fn pg_args<'v>(values: &'v [Value<'v>]) -> Vec<&'v (dyn ToSql + Sync)> {
    values.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

/// Rewrites a SQLite statement for PostgreSQL: placeholders (`?7`, or bare `?` counted in
/// order) become `$7`, leaving quoted text, identifiers and comments alone, and SQLite's index hints
/// (`INDEXED BY name`), which PostgreSQL's planner does without, are dropped.
#[must_use]
pub fn to_postgres(sql: &str) -> String {
    let mut sql = placeholders(sql);
    while let Some(at) = sql.find(" INDEXED BY ") {
        let rest = &sql[at + " INDEXED BY ".len()..];
        let name = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        sql.replace_range(at..at + " INDEXED BY ".len() + name, "");
    }
    sql
}

fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 0;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            // A comment is copied as it is: an apostrophe or a `?` in it is prose.
            None if c == '-' && chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            None if c == '/' && chars.peek() == Some(&'*') => {
                out.push(c);
                let mut last = '\0';
                for d in chars.by_ref() {
                    out.push(d);
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
            }
            None if c == '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                if digits.is_empty() {
                    next += 1;
                    digits = next.to_string();
                } else if let Ok(n) = digits.parse::<usize>() {
                    next = next.max(n);
                }
                out.push('$');
                out.push_str(&digits);
            }
            None => out.push(c),
        }
    }
    out
}

/// Hands out connections of either database to an r2d2 pool.
#[derive(Debug)]
pub enum Manager {
    Sqlite(r2d2_sqlite::SqliteConnectionManager),
    Postgres(tokio_postgres::Config),
}

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = Error;

    fn connect(&self) -> Result<Connection> {
        match self {
            Self::Sqlite(m) => Ok(m.connect()?.into()),
            Self::Postgres(config) => Connection::connect_postgres(config, false),
        }
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<()> {
        conn.execute_batch("SELECT 1")
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        match &conn.0 {
            Inner::Sqlite(_) => false,
            Inner::Postgres(c) => c.client.borrow().is_closed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_dollars_outside_quotes() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE a = ?1 AND b > ?2 OR c = ?1"),
            "SELECT a FROM t WHERE a = $1 AND b > $2 OR c = $1"
        );
        assert_eq!(
            to_postgres("UPDATE t SET a = ? WHERE b = ? AND c LIKE 'x?' AND \"q?\" = ?"),
            "UPDATE t SET a = $1 WHERE b = $2 AND c LIKE 'x?' AND \"q?\" = $3"
        );
        assert_eq!(to_postgres("VALUES (?3, ?)"), "VALUES ($3, $4)");
        // Comments are prose: their apostrophes and question marks change nothing.
        assert_eq!(
            to_postgres("SELECT ?1 -- the job's lease, or why?\n, ?2 /* it's ? */ , ?3"),
            "SELECT $1 -- the job's lease, or why?\n, $2 /* it's ? */ , $3"
        );
        assert_eq!(
            to_postgres("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_due WHERE a = ?1"),
            "SELECT MIN(run_at) FROM jobs WHERE a = $1"
        );
    }

    #[test]
    fn sqlite_binds_and_reads_every_kind() {
        let conn = Connection::from(rusqlite::Connection::open_in_memory().expect("open"));
        conn.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB) STRICT")
            .expect("create");
        let n = conn
            .execute(
                "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
                params![7_u32, 1.5, "x", vec![1_u8, 2]],
            )
            .expect("insert");
        assert_eq!(n, 1);
        conn.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            params![true, None::<f64>, None::<String>, None::<Vec<u8>>],
        )
        .expect("insert nulls");
        type Kinds = (i64, Option<f64>, Option<String>, Option<Vec<u8>>);
        let rows: Vec<Kinds> = conn
            .prepare_cached("SELECT i, r, s, b FROM t ORDER BY i DESC")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query")
            .collect::<Result<_>>()
            .expect("rows");
        assert_eq!(
            rows,
            vec![
                (7, Some(1.5), Some("x".into()), Some(vec![1, 2])),
                (1, None, None, None)
            ]
        );
        let missing = conn
            .query_row("SELECT s FROM t WHERE i = ?1", [99], |r| {
                r.get::<_, String>(0)
            })
            .optional()
            .expect("optional");
        assert_eq!(missing, None);
        let err = conn
            .query_row("SELECT s FROM t WHERE i = 7", [], |r| r.get::<_, i64>(0))
            .expect_err("text is not an integer");
        assert!(
            err.to_string().contains("expected an integer, found text"),
            "{err}"
        );
    }

    #[test]
    fn unique_violations_are_recognised() {
        let conn = Connection::from(rusqlite::Connection::open_in_memory().expect("open"));
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY)")
            .expect("create");
        conn.execute("INSERT INTO t VALUES (?1)", ["a"])
            .expect("first");
        let e = conn
            .execute("INSERT INTO t VALUES (?1)", ["a"])
            .expect_err("second");
        assert!(e.is_unique_violation(), "{e}");
    }
}
