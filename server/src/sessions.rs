//! Sessions live in the app's own database, whichever it is: SQLite's store for one process,
//! PostgreSQL's for several instances (any instance reads a session another one wrote, so a load
//! balancer needs no sticky sessions).

use app::backend::store::DbPool;
use async_trait::async_trait;
use tower_sessions::{
    session::{Id, Record},
    session_store, ExpiredDeletion, SessionStore,
};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

#[derive(Debug, Clone)]
pub enum Sessions {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Sessions {
    /// The session store on `pool`, with its table created if needed.
    pub async fn open(pool: DbPool) -> Result<Self, sqlx::Error> {
        Ok(match pool {
            DbPool::Sqlite(pool) => {
                let store = SqliteStore::new(pool);
                store.migrate().await?;
                Sessions::Sqlite(store)
            }
            DbPool::Postgres(pool) => {
                let store = PostgresStore::new(pool);
                store.migrate().await?;
                Sessions::Postgres(store)
            }
        })
    }
}

#[async_trait]
impl SessionStore for Sessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s) => s.create(record).await,
            Sessions::Postgres(s) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s) => s.save(record).await,
            Sessions::Postgres(s) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Sessions::Sqlite(s) => s.load(id).await,
            Sessions::Postgres(s) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s) => s.delete(id).await,
            Sessions::Postgres(s) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for Sessions {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s) => s.delete_expired().await,
            Sessions::Postgres(s) => s.delete_expired().await,
        }
    }
}
