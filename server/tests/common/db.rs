//! The database a test server runs on: a SQLite file in a temporary directory, or, when
//! `TEST_POSTGRES_URL` names a PostgreSQL server (`postgres://postgres@127.0.0.1:5432`), a fresh
//! database on it, dropped when the test ends. The test command runs the suite both ways.

use std::path::Path;

use sqlx::{AnyPool, Connection};

pub enum TestDatabase {
    Sqlite { url: String },
    Postgres { server: String, name: String },
}

/// Which PostgreSQL server the suite runs on, if it runs on one.
pub fn postgres_server() -> Option<String> {
    std::env::var("TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| url.trim_end_matches('/').to_owned())
}

impl TestDatabase {
    /// A new, empty database: a file in `dir`, or a new database on the PostgreSQL server.
    pub async fn create(dir: &Path) -> Self {
        match postgres_server() {
            None => TestDatabase::Sqlite {
                url: format!("sqlite://{}/test.db", dir.display()),
            },
            Some(server) => Self::create_postgres(server).await,
        }
    }

    pub async fn create_postgres(server: String) -> Self {
        let name = format!("saved_cards_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("TEST_POSTGRES_URL: PostgreSQL answers");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        TestDatabase::Postgres { server, name }
    }

    /// `DATABASE_URL` for the server.
    pub fn url(&self) -> String {
        match self {
            TestDatabase::Sqlite { url } => url.clone(),
            TestDatabase::Postgres { server, name } => format!("{server}/{name}"),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDatabase::Postgres { .. })
    }

    /// A pool of the test's own, for looking at what the server stored (portable SQL only).
    pub async fn pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.url()).await.expect("test pool")
    }

    /// Takes the write locks on the app's tables from another connection, as another process
    /// would (a backup, a stuck migration): writes wait, then fail as "busy"; reads go on.
    /// [`DatabaseLock::release`] gives them back.
    pub async fn lock(&self) -> DatabaseLock {
        match self {
            TestDatabase::Sqlite { url } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                DatabaseLock::Sqlite(conn)
            }
            TestDatabase::Postgres { .. } => {
                let mut conn = sqlx::PgConnection::connect(&self.url()).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query(
                    "LOCK TABLE customers, cards, jetpay_events, card_changes, early_results, \
                     rate_limits, jetpay_webhooks, tower_sessions.session IN EXCLUSIVE MODE",
                )
                .execute(&mut conn)
                .await
                .unwrap();
                DatabaseLock::Postgres(conn)
            }
        }
    }
}

pub enum DatabaseLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl DatabaseLock {
    pub async fn release(self) {
        match self {
            DatabaseLock::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            DatabaseLock::Postgres(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }
}

impl Drop for TestDatabase {
    /// Drops a PostgreSQL test database (closing the server's connections to it first). Runs on
    /// a thread of its own: the test's runtime may be the one shutting down.
    fn drop(&mut self) {
        let TestDatabase::Postgres { server, name } = self else {
            return;
        };
        let (server, name) = (server.clone(), name.clone());
        let database = name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {database}");
        }
    }
}
