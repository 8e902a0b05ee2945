//! Sessions live in the app's own database, whichever it is: SQLite's store for one process,
//! PostgreSQL's for several instances (any instance reads a session another one wrote, so a load
//! balancer needs no sticky sessions).

use std::collections::HashSet;

use app::backend::store::DbPool;
use async_trait::async_trait;
use sqlx::QueryBuilder;
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Id, Record},
    session_store, ExpiredDeletion, SessionStore,
};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

/// Where the stores keep sessions (their defaults, named here because [`Sessions::alive`]
/// reads the table too).
const SQLITE_TABLE: &str = "tower_sessions";
const POSTGRES_SCHEMA: &str = "tower_sessions";
const POSTGRES_TABLE: &str = "session";
/// Ids per query in [`Sessions::alive`]: far below either database's limit on bound values.
const IDS_PER_QUERY: usize = 1000;

#[derive(Debug, Clone)]
pub enum Sessions {
    Sqlite(SqliteStore, sqlx::SqlitePool),
    Postgres(PostgresStore, sqlx::PgPool),
}

impl Sessions {
    /// The session store on `pool`, with its table created if needed.
    pub async fn open(pool: DbPool) -> Result<Self, sqlx::Error> {
        Ok(match pool {
            DbPool::Sqlite(pool) => {
                let store = SqliteStore::new(pool.clone())
                    .with_table_name(SQLITE_TABLE)
                    .expect("a valid table name");
                store.migrate().await?;
                Sessions::Sqlite(store, pool)
            }
            DbPool::Postgres(pool) => {
                let store = PostgresStore::new(pool.clone())
                    .with_schema_name(POSTGRES_SCHEMA)
                    .and_then(|store| store.with_table_name(POSTGRES_TABLE))
                    .expect("valid schema and table names");
                store.migrate().await?;
                Sessions::Postgres(store, pool)
            }
        })
    }

    /// Which of `ids` name sessions that exist and have not expired, asked in one query per
    /// [`IDS_PER_QUERY`] ids (what every open live stream needs to know every few seconds).
    pub async fn alive(&self, ids: &[Id]) -> Result<HashSet<Id>, sqlx::Error> {
        let mut alive = HashSet::new();
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let found: Vec<String> = match self {
                Sessions::Sqlite(_, pool) => {
                    let mut query = QueryBuilder::new("SELECT id FROM ");
                    query
                        .push(SQLITE_TABLE)
                        .push(" WHERE expiry_date > ")
                        .push_bind(OffsetDateTime::now_utc())
                        .push(" AND id IN (");
                    let mut list = query.separated(", ");
                    for id in chunk {
                        list.push_bind(id.to_string());
                    }
                    query.push(")");
                    query.build_query_scalar().fetch_all(pool).await?
                }
                Sessions::Postgres(_, pool) => {
                    let sql = format!(
                        "SELECT id FROM \"{POSTGRES_SCHEMA}\".\"{POSTGRES_TABLE}\" \
                         WHERE expiry_date > $1 AND id = ANY($2)"
                    );
                    sqlx::query_scalar(&sql)
                        .bind(OffsetDateTime::now_utc())
                        .bind(chunk.iter().map(Id::to_string).collect::<Vec<_>>())
                        .fetch_all(pool)
                        .await?
                }
            };
            alive.extend(found.iter().filter_map(|id| id.parse::<Id>().ok()));
        }
        Ok(alive)
    }
}

#[async_trait]
impl SessionStore for Sessions {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s, _) => s.create(record).await,
            Sessions::Postgres(s, _) => s.create(record).await,
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s, _) => s.save(record).await,
            Sessions::Postgres(s, _) => s.save(record).await,
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        match self {
            Sessions::Sqlite(s, _) => s.load(id).await,
            Sessions::Postgres(s, _) => s.load(id).await,
        }
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s, _) => s.delete(id).await,
            Sessions::Postgres(s, _) => s.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for Sessions {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match self {
            Sessions::Sqlite(s, _) => s.delete_expired().await,
            Sessions::Postgres(s, _) => s.delete_expired().await,
        }
    }
}
