//! Customers and their Jetpay contact.

use async_trait::async_trait;
use sqlx::Row;

use super::{classify, Handle};
use crate::backend::now_ms;
use crate::backend::store::{CustomerId, CustomerRow, Customers, Result, StoreError};

#[async_trait]
impl Customers for Handle {
    async fn insert_customer(
        &self,
        id: &CustomerId,
        email: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(email)
        .bind(name)
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::EmailTaken)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerRow>> {
        self.customer_where("email = $1", email).await
    }

    async fn customer_by_id(&self, id: &CustomerId) -> Result<Option<CustomerRow>> {
        self.customer_where("id = $1", id.as_str()).await
    }

    async fn set_contact_id_if_missing(
        &self,
        customer_id: &CustomerId,
        contact_id: &str,
    ) -> Result<String> {
        sqlx::query("UPDATE customers SET jetpay_contact_id = $1 WHERE id = $2 AND jetpay_contact_id IS NULL")
            .bind(contact_id)
            .bind(customer_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT jetpay_contact_id FROM customers WHERE id = $1")
                .bind(customer_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?
                .flatten();
        stored.ok_or(StoreError::NotFound)
    }
}

impl Handle {
    async fn customer_where(&self, condition: &str, value: &str) -> Result<Option<CustomerRow>> {
        let sql = format!(
            "SELECT id, email, name, password_hash, jetpay_contact_id FROM customers WHERE {condition}"
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.map(|r| CustomerRow {
            id: CustomerId::new(r.get::<String, _>(0)),
            email: r.get(1),
            name: r.get(2),
            password_hash: r.get(3),
            jetpay_contact_id: r.get(4),
        }))
    }
}
