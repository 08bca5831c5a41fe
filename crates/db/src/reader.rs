//! The connection the SCIM ingress reads with.
//!
//! sqlx runs every SQLite statement on a worker thread of its connection and hands the rows back
//! through a channel. For the ingress's reads (a token, a `userName eq` page, a user's groups)
//! those thread hand-offs cost more than the statements: a profile of `userName eq` lookups put
//! 46% of the server's CPU in context switches and 1% in SQLite (see docs/performance.md).
//! [`ReadDb`] runs the same statements on the calling thread instead, on a small pool of
//! read-only connections. In WAL mode a reader never waits for the writer, so this costs a
//! request only the statement itself.
//!
//! The statements and the decoding of their rows are the ones the rest of the store uses: read
//! functions take anything that [`Reads`] (the pool, a [`ReadDb`]) and decode [`ReadRow`]s by
//! position through [`IndexedRow`], which sea-orm's own rows implement too. Anything that is not
//! a file-backed SQLite database (Postgres, `sqlite::memory:`) goes through the pool as before.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{OpenFlags, ToSql};
use sea_orm::sea_query::ValueType;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, QueryResult, Statement, TryGetable, Value};

/// How long a statement may hold the calling thread before it is interrupted and run on the
/// pool instead. Point reads take microseconds; an unindexed filter over a large account can
/// take much longer, and must not stall the other requests of an HTTP worker meanwhile.
const CALLER_THREAD_BUDGET: Duration = Duration::from_millis(10);

/// SQLite's progress handler runs every this many virtual-machine instructions.
const PROGRESS_STEPS: i32 = 1000;

/// Read-only connections to one SQLite file, used on whichever thread asks.
struct SqliteReader {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
    /// The column kinds of each statement text seen: working them out from the declared types
    /// took 3% of the server's CPU in lookups, on every statement.
    kinds: Mutex<HashMap<Box<str>, Arc<[ColumnKind]>>>,
}

/// How many statement texts [`SqliteReader::kinds`] remembers; filters make the texts many, so
/// the memory is bounded by forgetting them all when full.
const KINDS_CAPACITY: usize = 256;

/// Why a statement did not run on the calling thread.
enum ReadFailure {
    /// It ran longer than [`CALLER_THREAD_BUDGET`]: run it on the pool instead.
    Interrupted,
    /// It failed.
    Failed(DbErr),
}

impl SqliteReader {
    fn open(&self) -> Result<rusqlite::Connection, DbErr> {
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(read_error)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(read_error)?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch("PRAGMA cache_size = -8192").map_err(read_error)?;
        Ok(conn)
    }

    fn query(&self, stmt: &Statement) -> Result<Vec<ReadRow>, ReadFailure> {
        let conn = self.checkout().map_err(ReadFailure::Failed)?;
        let result = run_within_budget(self, &conn, stmt);
        self.give_back(conn);
        result
    }

    /// The column kinds of `prepared`, whose text is `sql`.
    fn kinds(&self, sql: &str, prepared: &rusqlite::Statement<'_>) -> Arc<[ColumnKind]> {
        if let Some(k) = self.kinds.lock().ok().and_then(|m| m.get(sql).cloned()) {
            return k;
        }
        let kinds: Arc<[ColumnKind]> = prepared.columns().iter().map(|c| ColumnKind::of(c.decl_type())).collect();
        if let Ok(mut m) = self.kinds.lock() {
            if m.len() >= KINDS_CAPACITY {
                m.clear();
            }
            m.insert(sql.into(), kinds.clone());
        }
        kinds
    }

    /// An idle connection, or a new one.
    fn checkout(&self) -> Result<rusqlite::Connection, DbErr> {
        match self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            Some(c) => Ok(c),
            None => self.open(),
        }
    }

    /// Returns a connection to the idle ones; a failed or interrupted statement leaves it usable.
    /// One still inside a transaction is closed instead: reused, every session that took it
    /// failed to begin its own ("cannot start a transaction within a transaction"), and its open
    /// read transaction kept SQLite from checkpointing, so the write-ahead log grew without bound
    /// (2.9 GB in five minutes of a 100,000-user Entra simulation).
    fn give_back(&self, conn: rusqlite::Connection) {
        if !conn.is_autocommit() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }
}

/// Runs `stmt` on `conn`, interrupted once it has held the thread for [`CALLER_THREAD_BUDGET`].
fn run_within_budget(
    reader: &SqliteReader,
    conn: &rusqlite::Connection,
    stmt: &Statement,
) -> Result<Vec<ReadRow>, ReadFailure> {
    let started = Instant::now();
    let result = conn
        .progress_handler(PROGRESS_STEPS, Some(move || started.elapsed() > CALLER_THREAD_BUDGET))
        .map_err(failure)
        .and_then(|()| run(reader, conn, stmt));
    // Left in place, the handler would interrupt whatever the connection runs next once the
    // budget of this statement had passed: a session's `BEGIN` or `COMMIT`.
    let _ = conn.progress_handler(PROGRESS_STEPS, None::<fn() -> bool>);
    result
}

/// Runs a statement without parameters or rows from the connection's statement cache
/// (`execute_batch` would parse it again every time).
fn exec_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn run(reader: &SqliteReader, conn: &rusqlite::Connection, stmt: &Statement) -> Result<Vec<ReadRow>, ReadFailure> {
    let mut prepared = conn.prepare_cached(&stmt.sql).map_err(failure)?;
    let params = params(stmt).map_err(ReadFailure::Failed)?;
    let kinds = reader.kinds(&stmt.sql, &prepared);
    let mut rows = prepared.query(rusqlite::params_from_iter(params.iter())).map_err(failure)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(failure)? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, kind) in kinds.iter().enumerate() {
            let value = row.get_ref(i).map_err(failure)?;
            values.push(kind.value(value).map_err(ReadFailure::Failed)?);
        }
        out.push(ReadRow(Cells::Local(values)));
    }
    Ok(out)
}

fn failure(e: rusqlite::Error) -> ReadFailure {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::OperationInterrupted) => ReadFailure::Interrupted,
        _ => ReadFailure::Failed(read_error(e)),
    }
}

fn read_error(e: rusqlite::Error) -> DbErr {
    DbErr::Custom(format!("sqlite read: {e}"))
}

/// How many virtual-machine steps SQLite takes to run `stmt` to completion on the file `db`
/// reads. Unlike a statement's time, this measure of its work does not depend on the machine's
/// speed or load, so tests can check that a query's cost does not grow with the data.
pub fn sqlite_vm_steps(db: &DatabaseConnection, stmt: &Statement) -> Result<i64, DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Err(DbErr::Custom("virtual-machine steps are counted on SQLite only".into()));
    }
    let path = db.get_sqlite_connection_pool().connect_options().get_filename().to_path_buf();
    let conn = rusqlite::Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(read_error)?;
    let mut prepared = conn.prepare(&stmt.sql).map_err(read_error)?;
    let params = params(stmt)?;
    let mut rows = prepared.query(rusqlite::params_from_iter(params.iter())).map_err(read_error)?;
    while rows.next().map_err(read_error)?.is_some() {}
    drop(rows);
    Ok(i64::from(prepared.get_status(rusqlite::StatementStatus::VmStep)))
}

/// A statement's parameters as SQLite binds them.
fn params(stmt: &Statement) -> Result<Vec<Box<dyn ToSql + '_>>, DbErr> {
    stmt.values.iter().flat_map(|v| v.0.iter()).map(param).collect()
}

/// A statement parameter as SQLite binds it.
fn param(v: &Value) -> Result<Box<dyn ToSql + '_>, DbErr> {
    Ok(match v {
        Value::String(s) => Box::new(s.as_deref()),
        Value::Char(c) => Box::new(c.map(|c| c.to_string())),
        Value::Bool(b) => Box::new(*b),
        Value::TinyInt(i) => Box::new(*i),
        Value::SmallInt(i) => Box::new(*i),
        Value::Int(i) => Box::new(*i),
        Value::BigInt(i) => Box::new(*i),
        Value::TinyUnsigned(i) => Box::new(*i),
        Value::SmallUnsigned(i) => Box::new(*i),
        Value::Unsigned(i) => Box::new(*i),
        Value::Float(f) => Box::new(*f),
        Value::Double(f) => Box::new(*f),
        Value::Bytes(b) => Box::new(b.as_deref()),
        other => return Err(DbErr::Custom(format!("sqlite read: unsupported parameter {other:?}"))),
    })
}

/// The sea-orm value type of a result column, from its declared type (SQLite stores booleans as
/// integers, and decoding a `bool` needs to know it is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ColumnKind {
    Bool,
    Integer,
    Real,
    Text,
    Blob,
    /// An expression (`COUNT(*)`, `COALESCE(…)`): typed by the value it holds.
    Untyped,
}

impl ColumnKind {
    fn of(declared: Option<&str>) -> Self {
        let Some(declared) = declared else { return ColumnKind::Untyped };
        let d = declared.to_ascii_lowercase();
        if d.starts_with("bool") {
            ColumnKind::Bool
        } else if d.contains("int") {
            ColumnKind::Integer
        } else if d.contains("char") || d.contains("text") || d.contains("clob") {
            ColumnKind::Text
        } else if d.contains("real") || d.contains("floa") || d.contains("doub") {
            ColumnKind::Real
        } else if d.contains("blob") {
            ColumnKind::Blob
        } else {
            ColumnKind::Untyped
        }
    }

    fn value(self, v: ValueRef<'_>) -> Result<Value, DbErr> {
        let mismatch = || DbErr::Custom(format!("sqlite read: a {self:?} column holds {:?}", v.data_type()));
        Ok(match (self, v) {
            (ColumnKind::Bool, ValueRef::Null) => Value::Bool(None),
            (ColumnKind::Bool, ValueRef::Integer(i)) => Value::Bool(Some(i != 0)),
            (ColumnKind::Integer, ValueRef::Null) => Value::BigInt(None),
            (ColumnKind::Real, ValueRef::Null) => Value::Double(None),
            (ColumnKind::Text | ColumnKind::Untyped, ValueRef::Null) => Value::String(None),
            (ColumnKind::Blob, ValueRef::Null) => Value::Bytes(None),
            (ColumnKind::Integer | ColumnKind::Untyped, ValueRef::Integer(i)) => Value::BigInt(Some(i)),
            (ColumnKind::Real | ColumnKind::Untyped, ValueRef::Real(f)) => Value::Double(Some(f)),
            (ColumnKind::Real, ValueRef::Integer(i)) => Value::Double(Some(i as f64)),
            (ColumnKind::Text | ColumnKind::Untyped, ValueRef::Text(t)) => {
                Value::String(Some(std::str::from_utf8(t).map_err(|_| mismatch())?.to_string()))
            }
            (ColumnKind::Blob | ColumnKind::Untyped, ValueRef::Blob(b)) => Value::Bytes(Some(b.to_vec())),
            _ => return Err(mismatch()),
        })
    }
}

/// A read connection: the database pool, plus, for a SQLite file, statements on the calling
/// thread. Writes always go through the pool.
#[derive(Clone)]
pub struct ReadDb {
    db: DatabaseConnection,
    sqlite: Option<Arc<SqliteReader>>,
    moved: Arc<AtomicU64>,
    keyed: Option<DatabaseConnection>,
}

impl ReadDb {
    /// Reads `db`'s database; on a SQLite file, on the calling thread.
    pub fn new(db: DatabaseConnection) -> Self {
        let sqlite = (db.get_database_backend() == DbBackend::Sqlite)
            .then(|| db.get_sqlite_connection_pool().connect_options().get_filename().to_path_buf())
            .filter(|path| is_file(path))
            .map(|path| Arc::new(SqliteReader { path, idle: Mutex::new(Vec::new()), kinds: Mutex::default() }));
        Self { db, sqlite, moved: Arc::new(AtomicU64::new(0)), keyed: None }
    }

    /// Runs [`Reads::key_row`] lookups on `keyed` (a [`crate::connect_keyed`] pool), if any.
    pub fn with_keyed(mut self, keyed: Option<DatabaseConnection>) -> Self {
        self.keyed = keyed;
        self
    }

    /// Whether statements run on the calling thread (a SQLite file) rather than on the pool.
    #[cfg(test)]
    fn on_calling_thread(&self) -> bool {
        self.sqlite.is_some()
    }

    /// How many statements outran the calling thread's budget and were run on the pool.
    #[cfg(test)]
    fn moved_to_pool(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

/// A result row, from the pool or read on the calling thread, decoded by position.
#[derive(Debug)]
pub struct ReadRow(Cells);

#[derive(Debug)]
enum Cells {
    Pool(QueryResult),
    Local(Vec<Value>),
}

/// Decoding a row's columns by position, whichever driver produced it: the store's row decoders
/// are written once against this.
pub trait IndexedRow {
    /// The value of column `index`.
    fn get<T: TryGetable + ValueType>(&self, index: usize) -> Result<T, DbErr>;
}

impl IndexedRow for QueryResult {
    fn get<T: TryGetable + ValueType>(&self, index: usize) -> Result<T, DbErr> {
        self.try_get_by_index(index)
    }
}

impl IndexedRow for ReadRow {
    fn get<T: TryGetable + ValueType>(&self, index: usize) -> Result<T, DbErr> {
        match &self.0 {
            Cells::Pool(row) => row.try_get_by_index(index),
            Cells::Local(values) => {
                let value =
                    values.get(index).ok_or_else(|| DbErr::Custom(format!("sqlite read: no column {index}")))?;
                T::try_from(value.clone())
                    .map_err(|_| DbErr::Custom(format!("sqlite read: column {index} holds {value:?}")))
            }
        }
    }
}

/// What read functions run their statements on: the pool, or the ingress's [`ReadDb`].
#[async_trait::async_trait]
pub trait Reads: Sync {
    /// The SQL dialect of the database.
    fn backend(&self) -> DbBackend;
    /// All rows of a query.
    async fn rows(&self, stmt: Statement) -> Result<Vec<ReadRow>, DbErr>;
    /// The first row of a query, if any.
    async fn row(&self, stmt: Statement) -> Result<Option<ReadRow>, DbErr> {
        Ok(self.rows(stmt).await?.into_iter().next())
    }
    /// The row of a lookup by a unique key, whose plan never depends on its parameters: it may
    /// run where plans are cached (see [`crate::connect_keyed`]).
    async fn key_row(&self, stmt: Statement) -> Result<Option<ReadRow>, DbErr> {
        self.row(stmt).await
    }
}

#[async_trait::async_trait]
impl Reads for DatabaseConnection {
    fn backend(&self) -> DbBackend {
        self.get_database_backend()
    }

    async fn rows(&self, stmt: Statement) -> Result<Vec<ReadRow>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().map(|r| ReadRow(Cells::Pool(r))).collect())
    }
}

#[async_trait::async_trait]
impl Reads for ReadDb {
    fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    async fn rows(&self, stmt: Statement) -> Result<Vec<ReadRow>, DbErr> {
        let local = self.sqlite.as_ref().map(|reader| reader.query(&stmt));
        self.finish(local, stmt).await
    }

    async fn key_row(&self, stmt: Statement) -> Result<Option<ReadRow>, DbErr> {
        match &self.keyed {
            Some(keyed) => keyed.row(stmt).await,
            None => self.row(stmt).await,
        }
    }
}

impl ReadDb {
    /// The rows of a statement tried on the calling thread (`local`, `None` when it was not): an
    /// interrupted one, and any statement on a database that is not a SQLite file, runs on the pool.
    async fn finish(
        &self,
        local: Option<Result<Vec<ReadRow>, ReadFailure>>,
        stmt: Statement,
    ) -> Result<Vec<ReadRow>, DbErr> {
        match local {
            Some(Ok(rows)) => return Ok(rows),
            Some(Err(ReadFailure::Failed(e))) => return Err(e),
            Some(Err(ReadFailure::Interrupted)) => {
                self.moved.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(sql = %stmt.sql, "slow read moved off the calling thread");
            }
            None => {}
        }
        self.db.rows(stmt).await
    }

    /// A read session: the statements of one request that only reads, in one read transaction.
    ///
    /// On a SQLite file every statement outside a transaction is a read transaction of its own,
    /// and starting and ending one (locks on the write-ahead log's index, an `fcntl` each, under
    /// a process-wide mutex the HTTP workers take turns at) cost more than a token check's
    /// statement. A session takes one connection at its first statement, keeps its transaction
    /// for every later one, and ends it when dropped. It also gives the request one snapshot: a
    /// page of groups and their members agree. It must not outlive a write the request waits for,
    /// or its reads would not see it; write handlers do not use one.
    pub fn session(&self) -> ReadSession<'_> {
        ReadSession { db: self, conn: Mutex::new(None) }
    }
}

/// One request's reads in one read transaction; see [`ReadDb::session`].
pub struct ReadSession<'a> {
    db: &'a ReadDb,
    /// The connection, inside its transaction, once a statement ran on the calling thread.
    conn: Mutex<Option<rusqlite::Connection>>,
}

impl ReadSession<'_> {
    /// Runs `stmt` in the session's transaction, starting it on the first statement.
    fn local(&self, reader: &SqliteReader, stmt: &Statement) -> Result<Vec<ReadRow>, ReadFailure> {
        let mut slot =
            self.conn.lock().map_err(|_| ReadFailure::Failed(DbErr::Custom("read session poisoned".into())))?;
        if slot.is_none() {
            let conn = reader.checkout().map_err(ReadFailure::Failed)?;
            if let Err(e) = exec_cached(&conn, "BEGIN") {
                // Closed, not given back: its state is unknown.
                return Err(ReadFailure::Failed(read_error(e)));
            }
            *slot = Some(conn);
        }
        match slot.as_ref() {
            Some(conn) => run_within_budget(reader, conn, stmt),
            None => Err(ReadFailure::Failed(DbErr::Custom("read session has no connection".into()))),
        }
    }
}

#[async_trait::async_trait]
impl Reads for ReadSession<'_> {
    fn backend(&self) -> DbBackend {
        self.db.backend()
    }

    async fn rows(&self, stmt: Statement) -> Result<Vec<ReadRow>, DbErr> {
        let local = self.db.sqlite.as_ref().map(|reader| self.local(reader, &stmt));
        self.db.finish(local, stmt).await
    }

    async fn key_row(&self, stmt: Statement) -> Result<Option<ReadRow>, DbErr> {
        match &self.db.keyed {
            Some(keyed) => keyed.row(stmt).await,
            None => self.row(stmt).await,
        }
    }
}

impl Drop for ReadSession<'_> {
    fn drop(&mut self) {
        let conn = self.conn.get_mut().ok().and_then(Option::take);
        if let (Some(conn), Some(reader)) = (conn, &self.db.sqlite) {
            // A connection whose transaction would not end is dropped rather than reused.
            if exec_cached(&conn, "COMMIT").is_ok() {
                reader.give_back(conn);
            }
        }
    }
}

/// An in-memory database (`sqlite::memory:`) has a name but no file, and other connections
/// cannot see it.
fn is_file(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// A statement that counts to `n`, one virtual-machine step at a time: slow for millions.
    fn counting_to(n: u64) -> String {
        format!("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n}) SELECT COUNT(*) FROM c")
    }

    /// How many connections the reader holds idle.
    fn idle(read: &ReadDb) -> usize {
        read.sqlite.as_ref().and_then(|r| r.idle.lock().ok().map(|i| i.len())).unwrap_or(0)
    }

    async fn fixture() -> Result<(ReadDb, DatabaseConnection), Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!("roster-reader-{}.db", uuid_like()));
        let db = crate::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
        db.execute_unprepared(
            "CREATE TABLE t (id varchar NOT NULL PRIMARY KEY, active boolean NOT NULL, n integer NULL, note text NULL)",
        )
        .await?;
        db.execute_unprepared("INSERT INTO t VALUES ('a', 1, 7, 'x'), ('b', 0, NULL, NULL)").await?;
        let read = ReadDb::new(db.clone());
        Ok((read, db))
    }

    fn uuid_like() -> String {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        format!("{}-{nanos}", std::process::id())
    }

    fn stmt(sql: &str, values: Vec<Value>) -> Statement {
        Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
    }

    #[tokio::test]
    async fn a_sqlite_file_is_read_on_the_calling_thread_and_memory_through_the_pool() -> TestResult {
        let (read, _db) = fixture().await?;
        assert!(read.on_calling_thread());
        let memory = sea_orm::Database::connect("sqlite::memory:").await?;
        assert!(!ReadDb::new(memory).on_calling_thread());
        Ok(())
    }

    #[tokio::test]
    async fn key_lookups_run_on_the_keyed_pool_when_there_is_one() -> TestResult {
        let (read, _db) = fixture().await?;
        let (_, keyed) = fixture().await?;
        keyed.execute_unprepared("UPDATE t SET note = 'keyed' WHERE id = 'a'").await?;
        let lookup = || stmt("SELECT note FROM t WHERE id = ?", vec!["a".into()]);
        let note = |row: Option<ReadRow>| row.map(|r| r.get::<String>(0)).transpose();
        assert_eq!(note(read.key_row(lookup()).await?)?.as_deref(), Some("x"), "no keyed pool: the reader's own");
        let read = read.with_keyed(Some(keyed));
        assert_eq!(note(read.key_row(lookup()).await?)?.as_deref(), Some("keyed"));
        assert_eq!(note(read.row(lookup()).await?)?.as_deref(), Some("x"), "other reads stay where they were");
        Ok(())
    }

    #[tokio::test]
    async fn remembered_column_kinds_stay_bounded_and_decode_every_statement() -> TestResult {
        let (read, _db) = fixture().await?;
        for i in 0..KINDS_CAPACITY + 10 {
            // Distinct texts, each shape twice: the second run decodes from the remembered kinds.
            let sql = format!("SELECT id, active, {i} FROM t WHERE id = ?");
            for _ in 0..2 {
                let row = read.row(stmt(&sql, vec!["a".into()])).await?.ok_or("no row")?;
                assert!(row.get::<bool>(1)?, "a boolean column decodes as one");
                assert_eq!(row.get::<i64>(2)?, i as i64);
            }
        }
        let remembered = read.sqlite.as_ref().and_then(|r| r.kinds.lock().ok().map(|m| m.len())).ok_or("no reader")?;
        assert!(remembered <= KINDS_CAPACITY, "{remembered} statement texts remembered");
        Ok(())
    }

    #[tokio::test]
    async fn rows_decode_as_the_pool_decodes_them() -> TestResult {
        let (read, db) = fixture().await?;
        let sql = "SELECT id, active, n, note, COUNT(*) OVER (), COALESCE(note, id) FROM t WHERE id >= ? ORDER BY id";
        let fast = read.rows(stmt(sql, vec!["a".into()])).await?;
        let pool = db.query_all_raw(stmt(sql, vec!["a".into()])).await?;
        assert_eq!(fast.len(), 2);
        for (f, p) in fast.iter().zip(&pool) {
            assert_eq!(f.get::<String>(0)?, p.get::<String>(0)?);
            assert_eq!(f.get::<bool>(1)?, p.get::<bool>(1)?);
            assert_eq!(f.get::<Option<i64>>(2)?, p.get::<Option<i64>>(2)?);
            assert_eq!(f.get::<Option<String>>(3)?, p.get::<Option<String>>(3)?);
            assert_eq!(f.get::<i64>(4)?, p.get::<i64>(4)?);
            assert_eq!(f.get::<String>(5)?, p.get::<String>(5)?);
        }
        assert!(!fast[1].get::<bool>(1)?);
        Ok(())
    }

    #[tokio::test]
    async fn parameters_of_every_kind_bind() -> TestResult {
        let (read, _db) = fixture().await?;
        let rows = read
            .rows(stmt(
                "SELECT id FROM t WHERE active = ? AND n = ? AND note = ?",
                vec![true.into(), 7i32.into(), "x".into()],
            ))
            .await?;
        assert_eq!(rows.len(), 1);
        let none = read.row(stmt("SELECT id FROM t WHERE id = ?", vec![Value::String(None)])).await?;
        assert!(none.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_write_committed_through_the_pool_is_visible_to_the_next_read() -> TestResult {
        let (read, db) = fixture().await?;
        let count = |rows: Vec<ReadRow>| rows.len();
        assert_eq!(count(read.rows(stmt("SELECT id FROM t", vec![])).await?), 2);
        db.execute_unprepared("INSERT INTO t VALUES ('c', 1, NULL, NULL)").await?;
        assert_eq!(count(read.rows(stmt("SELECT id FROM t", vec![])).await?), 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_read_is_finished_by_the_pool() -> TestResult {
        let (read, _db) = fixture().await?;
        // Three million rows of recursion: far past the calling thread's budget.
        let sql = counting_to(3_000_000);
        let row = read.row(stmt(&sql, vec![])).await?;
        assert_eq!(row.map(|r| r.get::<i64>(0)).transpose()?, Some(3_000_000));
        assert_eq!(read.moved_to_pool(), 1);
        let quick = read.rows(stmt("SELECT id FROM t", vec![])).await?;
        assert_eq!((quick.len(), read.moved_to_pool()), (2, 1), "the connection stays usable");
        Ok(())
    }

    #[tokio::test]
    async fn a_session_reads_one_snapshot_and_the_next_request_sees_later_writes() -> TestResult {
        let (read, db) = fixture().await?;
        let count = |rows: Vec<ReadRow>| rows.len();
        let all = || stmt("SELECT id FROM t", vec![]);
        {
            let session = read.session();
            assert_eq!(count(session.rows(all()).await?), 2);
            db.execute_unprepared("INSERT INTO t VALUES ('c', 1, NULL, NULL)").await?;
            assert_eq!(count(session.rows(all()).await?), 2, "the session's transaction keeps its snapshot");
            assert_eq!(count(read.rows(all()).await?), 3, "reads outside the session see the write");
        }
        let session = read.session();
        assert_eq!(count(session.rows(all()).await?), 3);
        Ok(())
    }

    #[tokio::test]
    async fn a_session_uses_one_connection_and_gives_it_back() -> TestResult {
        let (read, _db) = fixture().await?;
        {
            let session = read.session();
            session.rows(stmt("SELECT id FROM t", vec![])).await?;
            session.key_row(stmt("SELECT id FROM t WHERE id = ?", vec!["a".into()])).await?;
            assert_eq!(idle(&read), 0, "the session holds its connection");
        }
        assert_eq!(idle(&read), 1, "one connection served both statements and went back");
        {
            let unused = read.session();
            drop(unused);
        }
        assert_eq!(idle(&read), 1, "a session that read nothing took nothing");
        Ok(())
    }

    #[tokio::test]
    async fn a_session_survives_a_failed_and_a_slow_statement() -> TestResult {
        let (read, _db) = fixture().await?;
        let session = read.session();
        assert!(session.rows(stmt("SELECT nope FROM t", vec![])).await.is_err());
        let sql = counting_to(3_000_000);
        let row = session.row(stmt(&sql, vec![])).await?;
        assert_eq!(row.map(|r| r.get::<i64>(0)).transpose()?, Some(3_000_000));
        assert_eq!(read.moved_to_pool(), 1);
        assert_eq!(session.rows(stmt("SELECT id FROM t", vec![])).await?.len(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_connection_left_inside_a_transaction_is_closed_not_reused() -> TestResult {
        let (read, _db) = fixture().await?;
        let reader = read.sqlite.as_ref().ok_or("no sqlite reader")?;
        let conn = reader.checkout()?;
        exec_cached(&conn, "BEGIN")?;
        reader.give_back(conn);
        assert_eq!(idle(&read), 0);
        let session = read.session();
        assert_eq!(session.rows(stmt("SELECT id FROM t", vec![])).await?.len(), 2);
        drop(session);
        assert_eq!(idle(&read), 1, "the session's connection ended its transaction and went back");
        Ok(())
    }

    #[tokio::test]
    async fn a_slow_statement_leaves_no_deadline_behind_for_the_next_one() -> TestResult {
        let (read, _db) = fixture().await?;
        let slow = counting_to(3_000_000);
        read.row(stmt(&slow, vec![])).await?;
        let reader = read.sqlite.as_ref().ok_or("no sqlite reader")?;
        let conn = reader.checkout()?;
        std::thread::sleep(CALLER_THREAD_BUDGET * 2);
        // Long past the last statement's budget: only a handler left behind would interrupt it.
        let steps = counting_to(5000);
        let n: i64 = conn.query_row(&steps, [], |r| r.get(0))?;
        assert_eq!(n, 5000);
        Ok(())
    }

    #[tokio::test]
    async fn a_bad_statement_is_an_error_not_a_retry() -> TestResult {
        let (read, _db) = fixture().await?;
        let err = read.rows(stmt("SELECT nope FROM t", vec![])).await.err();
        assert!(err.is_some_and(|e| e.to_string().contains("no such column")));
        Ok(())
    }
}
