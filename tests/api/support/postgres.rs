//! A test's own database on the PostgreSQL server named by `MCSS_TEST_POSTGRES_URL`.
//!
//! Shared by the test binaries through `#[path = "support/postgres.rs"] mod postgres;`
//! (`tests/support/` has no `main.rs`, so Cargo does not build it as a test of its own).
//! [`PostgresDb::create`] makes a fresh database `<prefix><uuid>` on that server, or returns
//! `None` with a "skipped" note when the variable is unset, so a machine without PostgreSQL
//! still passes. Dropping the guard drops the database `WITH (FORCE)`, which also ends any
//! pool the test left open.

use sea_orm::ConnectionTrait as _;

/// A database created on the `MCSS_TEST_POSTGRES_URL` server; dropped (with FORCE) on drop.
pub struct PostgresDb {
    server_url: String,
    name: String,
    /// The `DATABASE_URL` of this database: the server URL with its path replaced.
    pub url: String,
}

impl PostgresDb {
    /// A fresh database named `<prefix><uuid>`, or `None` (with a note naming `test_name`)
    /// when `MCSS_TEST_POSTGRES_URL` is unset.
    pub async fn create(test_name: &str, prefix: &str) -> Option<PostgresDb> {
        let Ok(server_url) = std::env::var("MCSS_TEST_POSTGRES_URL") else {
            eprintln!("{test_name}: skipped on PostgreSQL: MCSS_TEST_POSTGRES_URL unset");
            return None;
        };
        let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(server_url.as_str())
            .await
            .expect("connect to MCSS_TEST_POSTGRES_URL");
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create the test database");
        let _ = admin.close().await;
        let mut url = url::Url::parse(&server_url).expect("MCSS_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Some(PostgresDb {
            server_url,
            name,
            url: url.to_string(),
        })
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop cannot await; a private runtime on its own thread keeps this out of the
        // test's runtime, and runs even when the test panicked.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for dropping the test database");
            rt.block_on(async move {
                if let Ok(admin) = sea_orm::Database::connect(server_url.as_str()).await {
                    let _ = admin.execute_unprepared(&sql).await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
