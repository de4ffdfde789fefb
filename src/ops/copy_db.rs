//! `hookrelay copy-db --to postgres://…`: copies a stopped SQLite database, every table and row
//! as it is (ids, secrets' ciphertexts, the queue, the history), into an empty PostgreSQL
//! database, in one PostgreSQL transaction: either all of it lands or none.
//!
//! The SQLite file must be at this binary's schema version (`hookrelay migrate` brings it
//! there) and no `serve` may hold it (its `<db>.lock` is taken for the copy). The target gets
//! the PostgreSQL schema first; a target whose tables hold any row is refused. Rows go in with
//! binary `COPY`, columns by name, each value as the type its PostgreSQL column has, and each
//! table's row count is compared before the commit; identity columns then continue after the
//! highest id copied. An advisory lock keeps two copies into one target apart.

use std::path::Path;
use std::time::Instant;

use ::postgres::binary_copy::BinaryCopyInWriter;
use ::postgres::types::{ToSql, Type};
use anyhow::Context as _;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OpenFlags};

use crate::store::{Schema, postgres};

/// What a copy moved.
#[derive(Debug)]
pub struct CopyReport {
    /// Each table and its rows, in copy order.
    pub tables: Vec<(String, u64)>,
    /// The schema version both databases have.
    pub version: usize,
    pub duration_ms: u128,
}

/// Copies the SQLite database at `db_path` into the empty PostgreSQL database at `url`.
/// `sqlite` and `postgres_schema` are the whole schema in each dialect.
///
/// # Errors
/// When the SQLite database is not at this binary's version, the target cannot be reached or is
/// not empty, or a row does not fit its PostgreSQL column; nothing is left half copied.
pub fn copy_db(
    db_path: &Path,
    url: &str,
    sqlite: Schema<'_>,
    postgres_schema: Schema<'_>,
) -> anyhow::Result<CopyReport> {
    let started = Instant::now();
    anyhow::ensure!(
        postgres::is_postgres_url(url),
        "--to must be a postgres:// (or postgresql://) URL"
    );
    anyhow::ensure!(
        db_path.exists(),
        "there is no SQLite database at {} (database.path)",
        db_path.display()
    );
    let source = Connection::open_with_flags(db_path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {}", db_path.display()))?;
    let version = crate::store::user_version(&source)?;
    let latest = crate::store::latest_version(sqlite);
    anyhow::ensure!(
        version == latest,
        "{} is at schema version {version}, this hookrelay copies version {latest}: {}",
        db_path.display(),
        if version < latest {
            "run `hookrelay migrate` on it first"
        } else {
            "run a newer hookrelay"
        }
    );

    // One snapshot of the whole file (the lock file keeps `serve` away; a backup may read).
    source.execute_batch("BEGIN")?;

    let mut client = postgres::connect(url)?;
    let tables = postgres::tables(postgres_schema);
    // A target that has the schema already is checked before it is migrated, so a refused one
    // is left exactly as it was.
    if postgres::schema_version(&mut client)? > 0 {
        ensure_empty(&mut client, &tables, true)?;
    }
    postgres::migrate(&mut client, postgres_schema)?;

    let mut tx = client.transaction()?;
    // Two copies into one target at once: the second waits here, then finds rows.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COPY_LOCK])?;
    ensure_empty(&mut tx, &tables, false)?;
    let mut copied = Vec::with_capacity(tables.len());
    for table in &tables {
        let n = copy_table(&source, &mut tx, table)
            .with_context(|| format!("copying table {table}"))?;
        let there: i64 = tx
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
            .get(0);
        anyhow::ensure!(
            u64::try_from(there).ok() == Some(n),
            "table {table}: {n} rows read from SQLite but {there} in the target; nothing was copied"
        );
        copied.push((table.clone(), n));
    }
    tx.commit().context("committing the copy")?;
    Ok(CopyReport {
        tables: copied,
        version,
        duration_ms: started.elapsed().as_millis(),
    })
}

/// Key of the advisory lock a copy holds ("copydb" in ASCII).
const COPY_LOCK: i64 = 0x636f_7079_6462;

/// Refuses a target in which any of `tables` has a row (those that do not exist yet, when
/// `only_existing`, are skipped).
fn ensure_empty(
    client: &mut impl ::postgres::GenericClient,
    tables: &[String],
    only_existing: bool,
) -> anyhow::Result<()> {
    for table in tables {
        if only_existing {
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])?
                .get(0);
            if !exists {
                continue;
            }
        }
        let has_rows: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])?
            .get(0);
        anyhow::ensure!(
            !has_rows,
            "the target database is not empty (table {table} has rows): copy-db only fills an \
             empty database, so that nothing there is mixed with or overwritten by the copy"
        );
    }
    Ok(())
}

/// A PostgreSQL column: its name, its type, and whether it is an identity column.
struct Column {
    name: String,
    ty: Type,
    identity: bool,
}

fn columns(tx: &mut ::postgres::Transaction<'_>, table: &str) -> anyhow::Result<Vec<Column>> {
    let rows = tx.query(
        "SELECT column_name, data_type, is_identity = 'YES' FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        &[&table],
    )?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(0);
            let ty = match r.get::<_, String>(1).as_str() {
                "bigint" => Type::INT8,
                "text" => Type::TEXT,
                "bytea" => Type::BYTEA,
                other => {
                    anyhow::bail!("column {name} has type {other}, which copy-db does not map")
                }
            };
            Ok(Column {
                name,
                ty,
                identity: r.get(2),
            })
        })
        .collect()
}

/// One SQLite value as the PostgreSQL type of its column.
fn convert(value: SqlValue, column: &Column) -> anyhow::Result<Box<dyn ToSql + Sync + Send>> {
    Ok(match (value, &column.ty) {
        (SqlValue::Null, &Type::INT8) => Box::new(None::<i64>),
        (SqlValue::Null, &Type::TEXT) => Box::new(None::<String>),
        (SqlValue::Null, _) => Box::new(None::<Vec<u8>>),
        (SqlValue::Integer(i), &Type::INT8) => Box::new(i),
        (SqlValue::Text(s), &Type::TEXT) => Box::new(s),
        (SqlValue::Blob(b), &Type::BYTEA) => Box::new(b),
        (other, ty) => anyhow::bail!(
            "column {} holds a {:?} value, which does not fit its PostgreSQL type {ty}",
            column.name,
            other.data_type()
        ),
    })
}

/// Copies every row of `table`; returns how many.
fn copy_table(
    source: &Connection,
    tx: &mut ::postgres::Transaction<'_>,
    table: &str,
) -> anyhow::Result<u64> {
    let columns = columns(tx, table)?;
    anyhow::ensure!(!columns.is_empty(), "the target has no table {table}");
    let names = columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let types: Vec<Type> = columns.iter().map(|c| c.ty.clone()).collect();
    let sink = tx.copy_in(&format!("COPY {table} ({names}) FROM STDIN BINARY"))?;
    let mut writer = BinaryCopyInWriter::new(sink, &types);

    let mut stmt = source.prepare(&format!("SELECT {names} FROM {table}"))?;
    let mut rows = stmt.query([])?;
    let mut n = 0u64;
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(columns.len());
        for (i, column) in columns.iter().enumerate() {
            values.push(convert(row.get::<_, SqlValue>(i)?, column)?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| v.as_ref() as &(dyn ToSql + Sync))
            .collect();
        writer.write(&refs)?;
        n += 1;
    }
    writer.finish()?;

    for column in columns.iter().filter(|c| c.identity) {
        // The next id after the highest copied (or 1 for an empty table).
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{name}'),
                               COALESCE((SELECT MAX({name}) FROM {table}), 1),
                               (SELECT MAX({name}) FROM {table}) IS NOT NULL)",
                name = column.name
            ),
            &[],
        )?;
    }
    Ok(n)
}
