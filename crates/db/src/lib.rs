//! Connecting to SQLite or Postgres with settings that suit Roster, running migrations, and the
//! one placeholder helper every crate that writes SQL by hand shares.

use std::time::Duration;

mod reader;
pub use reader::{IndexedRow, ReadDb, ReadRow, ReadSession, Reads, sqlite_vm_steps};

use roster_migrations::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement, Value};

/// The connection handle every Roster component shares.
pub type Db = DatabaseConnection;

/// Errors of the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database failed or rejected a statement.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// A stored value could not be decoded (corruption or a bug, never client input).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The configured database URL is not usable.
    #[error("invalid database URL: {0}")]
    Url(String),
}

/// Opens a connection pool for `url` (`sqlite://…` or `postgres://…`).
///
/// SQLite gets WAL journaling, full fsync on commit (acknowledged writes survive power loss) and a
/// generous busy timeout, because the log writer and the projector take turns at the write lock.
pub async fn connect(url: &str) -> Result<Db, StoreError> {
    connect_with_pool(url, None).await
}

/// Like [`connect`], with an explicit pool size (default: 8 for SQLite, 20 for Postgres).
pub async fn connect_with_pool(url: &str, max_connections: Option<u32>) -> Result<Db, StoreError> {
    let size = max_connections.unwrap_or(if url.starts_with("sqlite:") { 8 } else { 20 }).max(2);
    let mut opts = options(url)?;
    opts.max_connections(size);
    Ok(Database::connect(opts).await?)
}

/// One connection, kept open, for the embedded log's writer. In WAL mode a SQLite connection drops
/// its whole page cache when it finds that another connection wrote since its last transaction. A
/// pool hands its idle connections out in turn, so each group commit ran on a connection that had
/// missed the commits before it and read every index page it needed back from the OS; the writer's
/// own connection finds its pages where its last commit left them.
pub async fn connect_writer(url: &str) -> Result<Db, StoreError> {
    let mut opts = options(url)?;
    opts.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
    Ok(Database::connect(opts).await?)
}

/// Connections at most in a [`connect_keyed`] pool: each of its statements is one index probe.
const KEYED_POOL_SIZE: u32 = 8;

/// On Postgres, a small pool for lookups by a unique key (a token's hash, event ids), whose
/// connections keep Postgres's default plan caching instead of [`options`]' custom plans: such a
/// lookup's plan never depends on its parameters, and planning the token check again on every
/// request was a quarter of Postgres's statement time under split-deployment creates. `None` on
/// SQLite, which does not plan per execution.
pub async fn connect_keyed(url: &str) -> Result<Option<Db>, StoreError> {
    if url.starts_with("sqlite:") {
        return Ok(None);
    }
    let mut opts = options(url)?;
    // A later `-c` in the startup options overrides the earlier one.
    opts.max_connections(KEYED_POOL_SIZE)
        .min_connections(0)
        .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "auto")]));
    Ok(Some(Database::connect(opts).await?))
}

/// The connection settings every pool shares.
fn options(url: &str) -> Result<ConnectOptions, StoreError> {
    if let Some(path) = sqlite_path(url) {
        if let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Url(format!("cannot create {}: {e}", dir.display())))?;
        }
    } else if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(StoreError::Url(format!(
            "unsupported database URL scheme in {:?}: use sqlite://… or postgres://…",
            redact(url)
        )));
    }
    let mut opts = ConnectOptions::new(url.to_string());
    // sqlx pings a connection on every checkout by default: one more round trip per statement
    // outside a transaction and per transaction (1.2 ms of each of the embedded log's 8 ms group
    // commits under load). Only a connection that may have died while idle is worth the ping: a
    // Postgres connection idle across an outage or a failover would fail the request it is handed
    // to, and under load no connection stays idle for a second. SQLite's cannot die.
    let ping_if_idle_for = if url.starts_with("sqlite:") { Duration::from_secs(30) } else { Duration::from_secs(1) };
    opts.sqlx_logging(false)
        .acquire_timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(10))
        .test_before_acquire_if_idle_for(ping_if_idle_for)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(false)
                // SQLite's default page cache is 2 MB per connection: at 100,000 users the
                // projector and the licensing worker spent a fifth of their time copying pages
                // back from the OS with pread. The cache grows only as pages are used.
                .pragma("cache_size", "-32768")
        })
        // Prepared statements switch to a generic plan after five runs. For the projector's batch
        // lookups (`account_id = $1 AND id IN ($2, …)`) that plan, made while the table was small,
        // walked every user of the account and filtered: 9 ms per lookup at 8,000 users instead of
        // a few index probes. Custom plans cost a little planning per statement and are always right.
        .map_sqlx_postgres_opts(|o| o.options([("plan_cache_mode", "force_custom_plan")]));
    Ok(opts)
}

/// Applies pending migrations.
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    if pending_migrations(db).await?.is_empty() {
        return Ok(());
    }
    Migrator::up(db, None).await?;
    Ok(())
}

/// Whether every migration has been applied, for `/readyz`.
pub async fn migrations_applied(db: &Db) -> Result<bool, StoreError> {
    Ok(pending_migrations(db).await?.is_empty())
}

/// The migrations this binary knows and the database has not applied.
///
/// The database may also hold migrations this binary does not know: a newer version applied them
/// (during a rollout, or before a rollback). sea-orm refuses to start then ("Migration file … is
/// missing"), but Roster's migrations keep the previous version working on the newer schema
/// (docs/kubernetes.md), so those are not an error here.
async fn pending_migrations(db: &Db) -> Result<Vec<String>, StoreError> {
    let known = Migrator::migrations().into_iter().map(|m| m.name().to_string());
    let schema = roster_migrations::SchemaManager::new(db);
    if !schema.has_table("seaql_migrations").await? {
        return Ok(known.collect());
    }
    let rows = db
        .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT version FROM seaql_migrations"))
        .await?;
    let applied =
        rows.iter().map(|r| r.try_get_by_index::<String>(0)).collect::<Result<std::collections::HashSet<_>, _>>()?;
    Ok(known.filter(|m| !applied.contains(m)).collect())
}

/// Cheap liveness query, for `/readyz`.
pub async fn ping(db: &Db) -> Result<(), StoreError> {
    db.execute_unprepared("SELECT 1").await?;
    Ok(())
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(path.to_string())
}

/// The URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..s], user, &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Rewrites `?` placeholders into `$n` for Postgres (our SQL text never contains literal `?`).
pub fn sql(backend: DbBackend, text: &str) -> String {
    if backend != DbBackend::Postgres {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// Builds a statement from `?`-placeholder SQL for the connection's backend.
pub fn stmt<I: IntoIterator<Item = Value>>(backend: DbBackend, text: &str, values: I) -> Statement {
    Statement::from_sql_and_values(backend, sql(backend, text), values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password() {
        assert_eq!(redact("postgres://roster:secret@h:5432/db"), "postgres://roster:***@h:5432/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn postgres_placeholders_are_numbered_in_order() {
        assert_eq!(sql(DbBackend::Postgres, "a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(sql(DbBackend::Sqlite, "a = ?"), "a = ?");
    }

    #[tokio::test]
    async fn keyed_pool_keeps_default_plan_caching_and_the_main_pool_forces_custom_plans()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(url) = testing::postgres_url() else { return Ok(()) };
        let mode = |db: Db| async move {
            let row = db.query_one_raw(Statement::from_string(DbBackend::Postgres, "SHOW plan_cache_mode")).await?;
            let mode: String = row.ok_or("no row")?.try_get_by_index(0)?;
            Ok::<String, Box<dyn std::error::Error>>(mode)
        };
        let keyed = connect_keyed(&url).await?.ok_or("no keyed pool on Postgres")?;
        assert_eq!(mode(keyed).await?, "auto");
        assert_eq!(mode(connect(&url).await?).await?, "force_custom_plan");
        Ok(())
    }

    #[tokio::test]
    async fn sqlite_has_no_keyed_pool() -> Result<(), Box<dyn std::error::Error>> {
        assert!(connect_keyed("sqlite::memory:").await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn a_database_migrated_by_a_newer_version_is_accepted() -> Result<(), Box<dyn std::error::Error>> {
        let (db, _) = testing::fresh_sqlite("newer-schema").await?;
        db.execute_unprepared(
            "INSERT INTO seaql_migrations (version, applied_at) VALUES ('m20991231_000001_from_a_newer_version', 0)",
        )
        .await?;
        migrate(&db).await?;
        assert!(migrations_applied(&db).await?, "the previous version runs on the newer schema");
        Ok(())
    }

    #[tokio::test]
    async fn a_migration_the_database_lacks_is_pending_until_applied() -> Result<(), Box<dyn std::error::Error>> {
        let (db, _) = testing::fresh_sqlite("lacks-one").await?;
        let last = Migrator::migrations().last().map(|m| m.name().to_string()).ok_or("no migrations")?;
        db.execute_unprepared(&format!("DELETE FROM seaql_migrations WHERE version = '{last}'")).await?;
        assert!(!migrations_applied(&db).await?);
        migrate(&db).await?;
        assert!(migrations_applied(&db).await?);
        let fresh = sea_orm::Database::connect("sqlite::memory:").await?;
        assert!(!migrations_applied(&fresh).await?, "an empty database has every migration pending");
        Ok(())
    }

    #[test]
    fn sqlite_path_ignores_query_and_memory() {
        assert_eq!(sqlite_path("sqlite://roster-data/roster.db?mode=rwc").as_deref(), Some("roster-data/roster.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}

/// Support for tests that run the same body on SQLite and Postgres.
pub mod testing {
    use super::{Db, StoreError, connect, migrate};
    use sea_orm::ConnectionTrait;

    /// The Postgres server tests may use (`make test` sets it), if any.
    pub fn postgres_url() -> Option<String> {
        std::env::var("ROSTER_TEST_DATABASE_URL").ok().filter(|u| u.starts_with("postgres"))
    }

    /// A fresh, migrated SQLite database in a new temporary file.
    pub async fn fresh_sqlite(tag: &str) -> Result<(Db, String), StoreError> {
        let dir = std::env::temp_dir().join(format!("roster-test-{tag}-{}-{}", std::process::id(), unique()));
        let url = format!("sqlite://{}/roster.db?mode=rwc", dir.display());
        let db = connect(&url).await?;
        migrate(&db).await?;
        Ok((db, url))
    }

    /// A fresh, migrated Postgres database created on the server of `base_url`.
    pub async fn fresh_postgres(base_url: &str, tag: &str) -> Result<(Db, String), StoreError> {
        let admin = connect(base_url).await?;
        let name = format!("roster_test_{tag}_{}_{}", std::process::id(), unique());
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
        admin.close().await?;
        let (prefix, _) = base_url.rsplit_once('/').ok_or_else(|| StoreError::Url(base_url.into()))?;
        let url = format!("{prefix}/{name}");
        let db = connect(&url).await?;
        migrate(&db).await?;
        Ok((db, url))
    }

    /// Reads through another [`Reads`] and keeps every statement run, so a test can examine the
    /// statements that a store function issues (see [`crate::sqlite_vm_steps`]).
    pub struct Recording<'a, R> {
        inner: &'a R,
        seen: std::sync::Mutex<Vec<sea_orm::Statement>>,
    }

    impl<'a, R> Recording<'a, R> {
        /// Records the reads made through `inner`.
        pub fn new(inner: &'a R) -> Self {
            Self { inner, seen: std::sync::Mutex::new(Vec::new()) }
        }

        /// The statements run so far, in order.
        pub fn statements(&self) -> Vec<sea_orm::Statement> {
            self.seen.lock().map(|s| s.clone()).unwrap_or_default()
        }
    }

    #[async_trait::async_trait]
    impl<R: crate::Reads> crate::Reads for Recording<'_, R> {
        fn backend(&self) -> sea_orm::DbBackend {
            self.inner.backend()
        }

        async fn rows(&self, stmt: sea_orm::Statement) -> Result<Vec<crate::ReadRow>, sea_orm::DbErr> {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(stmt.clone());
            }
            self.inner.rows(stmt).await
        }
    }

    fn unique() -> u64 {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or_default();
        nanos * 1000 + N.fetch_add(1, Ordering::Relaxed)
    }
}
