//! The webhook this server registered at Jetpay.

use async_trait::async_trait;

use super::{classify, Handle};
use crate::backend::now_ms;
use crate::backend::store::{Result, WebhookRegistration, Webhooks};

#[async_trait]
impl Webhooks for Handle {
    async fn webhook_registration(
        &self,
        callback_url: &str,
    ) -> Result<Option<WebhookRegistration>> {
        let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT identifier, webhook_id, api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.and_then(|(identifier, webhook_id, api_key)| {
            Some(WebhookRegistration {
                identifier,
                webhook_id: webhook_id?,
                api_key: api_key?,
            })
        }))
    }

    async fn webhook_api_key(&self, callback_url: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?
        .flatten())
    }

    async fn save_webhook_registration(
        &self,
        callback_url: &str,
        registration: &WebhookRegistration,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jetpay_webhooks (callback_url, identifier, webhook_id, api_key, registered_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (callback_url) DO UPDATE SET identifier = excluded.identifier, \
             webhook_id = excluded.webhook_id, api_key = excluded.api_key",
        )
        .bind(callback_url)
        .bind(&registration.identifier)
        .bind(registration.webhook_id)
        .bind(&registration.api_key)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }
}
