//! Test support: every store test runs against both backends.
//!
//! [`backends`] gives a fresh SQLite store and a fresh PostgreSQL database in a throwaway
//! cluster that `scripts/throwaway-postgres` starts once per test process (and stops when the
//! process ends). Without a PostgreSQL server installed the PostgreSQL half fails, naming
//! the package; `WHARF_TEST_NO_POSTGRES=1` runs the SQLite half alone, saying so.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{Connect, Store};

/// A store under test and what keeps it alive.
pub(crate) struct UnderTest {
    pub name: &'static str,
    pub store: Store,
    _dir: Option<tempfile::TempDir>,
}

static CLUSTER: OnceLock<String> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/throwaway-postgres")
}

/// The URL (without database) of this process's throwaway cluster, started on first use.
pub(crate) fn cluster() -> &'static str {
    CLUSTER.get_or_init(|| {
        let mut last = String::new();
        for _ in 0..3 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("a free loopback port");
            let dir = format!("/tmp/wharf-store-pg-{}-{port}", std::process::id());
            let out = Command::new(script())
                .args([&dir, &port.to_string(), &std::process::id().to_string()])
                .output()
                .expect("scripts/throwaway-postgres runs");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        panic!("cannot start a throwaway PostgreSQL: {last}");
    })
}

/// A new, empty database in the throwaway cluster; its URL.
pub(crate) async fn new_database() -> String {
    let base = cluster();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(&format!("{base}/postgres"))
        .await
        .expect("connect to the throwaway cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create a test database");
    admin.close().await;
    format!("{base}/{name}")
}

/// A fresh store on each backend.
pub(crate) async fn backends() -> Vec<UnderTest> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open_sqlite(&dir.path().join("t.db"))
        .await
        .expect("open SQLite");
    let mut all = vec![UnderTest {
        name: "sqlite",
        store: sqlite,
        _dir: Some(dir),
    }];
    if std::env::var_os("WHARF_TEST_NO_POSTGRES").is_some() {
        eprintln!("WHARF_TEST_NO_POSTGRES is set: the PostgreSQL half of this test is skipped");
        return all;
    }
    let url = new_database().await;
    let postgres = Store::open(&Connect {
        url,
        ..Connect::default()
    })
    .await
    .expect("open PostgreSQL");
    all.push(UnderTest {
        name: "postgres",
        store: postgres,
        _dir: None,
    });
    all
}

impl Store {
    /// Runs `sql` as is: tests use it to tamper with rows the way a hand edit would.
    pub(crate) async fn execute_raw(&self, sql: &'static str) {
        crate::backend::on_pool!(self, pool => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()))
            .expect("raw SQL runs");
    }
}
