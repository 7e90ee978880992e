//! The local cloud's persistent state: one SQLite database (WAL) plus object files under the state
//! directory. Every call opens its own connection on the blocking pool, so several provider
//! processes (several Terraform runs) can share one state directory safely; SQLite's locking and a
//! busy timeout serialise their writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::LocalCloudError;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, principal TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS federated_tokens (
  hash TEXT PRIMARY KEY, principal TEXT NOT NULL, sets TEXT NOT NULL, project_number TEXT NOT NULL,
  pool TEXT NOT NULL, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS issuer_keys (kid TEXT PRIMARY KEY, pkcs8 BLOB NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS projects (id TEXT PRIMARY KEY, number TEXT NOT NULL, policy TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buckets (
  name TEXT PRIMARY KEY, project TEXT NOT NULL, resource TEXT NOT NULL,
  metageneration INTEGER NOT NULL, policy TEXT NOT NULL, policy_etag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS objects (
  bucket TEXT NOT NULL, name TEXT NOT NULL, generation INTEGER NOT NULL, resource TEXT NOT NULL,
  file TEXT NOT NULL, PRIMARY KEY (bucket, name));
CREATE TABLE IF NOT EXISTS uploads (
  id TEXT PRIMARY KEY, bucket TEXT NOT NULL, resource TEXT NOT NULL, preconditions TEXT NOT NULL,
  file TEXT NOT NULL, received INTEGER NOT NULL, principal TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS key_rings (
  name TEXT PRIMARY KEY, project TEXT NOT NULL, resource TEXT NOT NULL, policy TEXT NOT NULL, policy_etag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS crypto_keys (
  name TEXT PRIMARY KEY, key_ring TEXT NOT NULL, resource TEXT NOT NULL, policy TEXT NOT NULL, policy_etag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS key_versions (
  name TEXT PRIMARY KEY, crypto_key TEXT NOT NULL, number INTEGER NOT NULL, material BLOB NOT NULL,
  state TEXT NOT NULL, create_time TEXT NOT NULL, destroy_time TEXT);
CREATE TABLE IF NOT EXISTS wif_pools (
  name TEXT PRIMARY KEY, parent TEXT NOT NULL, resource TEXT NOT NULL, expire INTEGER);
CREATE TABLE IF NOT EXISTS wif_providers (
  name TEXT PRIMARY KEY, pool TEXT NOT NULL, resource TEXT NOT NULL, expire INTEGER);
CREATE TABLE IF NOT EXISTS operations (name TEXT PRIMARY KEY, result TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (
  project TEXT NOT NULL, zone TEXT NOT NULL, name TEXT NOT NULL, id TEXT NOT NULL,
  resource TEXT NOT NULL, supervisor TEXT NOT NULL DEFAULT '', PRIMARY KEY (project, zone, name));
CREATE TABLE IF NOT EXISTS compute_operations (
  project TEXT NOT NULL, zone TEXT NOT NULL, name TEXT NOT NULL, request_id TEXT,
  resource TEXT NOT NULL, PRIMARY KEY (project, zone, name));
CREATE TABLE IF NOT EXISTS ar_repositories (
  name TEXT PRIMARY KEY, project TEXT NOT NULL, resource TEXT NOT NULL, policy TEXT NOT NULL,
  policy_etag INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ar_operations (name TEXT PRIMARY KEY, resource TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS log_entries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, log_name TEXT NOT NULL, timestamp TEXT NOT NULL,
  entry TEXT NOT NULL);
"#;

#[derive(Clone, Debug)]
pub struct Store {
    pub dir: PathBuf,
    db: PathBuf,
}

impl Store {
    /// Opens (creating when missing) the state directory and database, and migrates the schema.
    pub fn open(dir: &Path) -> Result<Store, LocalCloudError> {
        let state_err = |e: std::io::Error| LocalCloudError::StateDir { path: dir.to_path_buf(), source: e };
        std::fs::create_dir_all(dir.join("objects")).map_err(state_err)?;
        std::fs::create_dir_all(dir.join("uploads")).map_err(state_err)?;
        restrict(dir, 0o700).map_err(state_err)?;
        let store = Store { dir: dir.to_path_buf(), db: dir.join("local-cloud.db") };
        let conn = store.connect()?;
        conn.execute_batch("PRAGMA journal_mode = WAL;").map_err(|e| store.db_err(e))?;
        conn.execute_batch(SCHEMA).map_err(|e| store.db_err(e))?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION.to_string()],
        )
        .map_err(|e| store.db_err(e))?;
        let _ = restrict(&store.db, 0o600);
        Ok(store)
    }

    pub fn db_err(&self, e: rusqlite::Error) -> LocalCloudError {
        LocalCloudError::Database { path: self.db.clone(), message: e.to_string() }
    }

    pub fn connect(&self) -> Result<Connection, LocalCloudError> {
        let conn = Connection::open_with_flags(
            &self.db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.db_err(e))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(|e| self.db_err(e))?;
        // With WAL, NORMAL keeps the database consistent across crashes and skips an fsync per
        // commit; a power cut may lose the last commits of a local development cloud, never corrupt it.
        conn.execute_batch("PRAGMA synchronous = NORMAL;").map_err(|e| self.db_err(e))?;
        Ok(conn)
    }

    /// Runs `f` with a fresh connection on the blocking pool.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, crate::api::ApiError> + Send + 'static,
    ) -> Result<T, crate::api::ApiError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = store.connect().map_err(|e| crate::api::ApiError::internal(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| crate::api::ApiError::internal(e.to_string()))?
    }

    /// Where objects' data files live.
    pub fn objects_dir(&self) -> PathBuf {
        self.dir.join("objects")
    }
    pub fn object_path(&self, file: &str) -> PathBuf {
        self.objects_dir().join(file)
    }
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.dir.join("uploads").join(id)
    }
}

fn restrict(p: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
}

/// Maps "database is busy/locked" and constraint errors to API errors; everything else is 500.
pub fn sql(e: rusqlite::Error) -> crate::api::ApiError {
    crate::api::ApiError::internal(format!("database: {e}"))
}

/// A stored IAM policy (JSON text in column 0 of `sql_text`'s row for `key`), parsed.
pub fn load_policy(
    c: &rusqlite::Connection,
    sql_text: &str,
    key: &str,
) -> Result<Option<serde_json::Value>, crate::api::ApiError> {
    let p: Option<String> = c.query_row(sql_text, [key], |r| r.get(0)).optional().map_err(sql)?;
    Ok(p.and_then(|p| serde_json::from_str(&p).ok()))
}
