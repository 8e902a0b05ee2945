//! Rate limits: per client IP on the actions worth abusing (sign-up, sign-in, Add card), and per
//! account *and* IP on failed sign-ins.
//!
//! Why both: a per-account lock alone lets anyone lock the real owner out by typing wrong
//! passwords for their email (six tries used to do it for 15 minutes). Failures are counted per
//! (email, client IP), so an attacker locks only their own address out; the per-IP limits bound
//! how fast any one address can guess across accounts or pile up tokenization URLs.
//!
//! Both are counted in the database ([`super::store::Limits`]), so that several instances behind a
//! load balancer share them: a guesser gains nothing by landing on another instance.

use std::time::Duration;

use super::{now_ms, AppError, Backend};
use crate::session::ClientIp;

/// What is limited per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignUp,
    SignIn,
    AddCard,
}

impl Action {
    fn key(self, ip: ClientIp) -> String {
        let action = match self {
            Action::SignUp => "sign_up",
            Action::SignIn => "sign_in",
            Action::AddCard => "add_card",
        };
        format!("ip:{action}:{}", ip.0)
    }
}

/// The window per-IP limits count in.
const IP_WINDOW: Duration = Duration::from_secs(60);

/// Who is guessing at which account.
fn guesser_key(email: &str, ip: Option<ClientIp>) -> String {
    match ip {
        Some(ip) => format!("sign_in_failures:{}:{email}", ip.0),
        None => format!("sign_in_failures:-:{email}"),
    }
}

impl Backend {
    /// Takes one request of `action` for `ip`. Without an address (a call from inside the
    /// server, e.g. seeding) nothing is limited.
    pub(super) async fn check_ip_limit(
        &self,
        action: Action,
        ip: Option<ClientIp>,
    ) -> Result<(), AppError> {
        let Some(ip) = ip else {
            return Ok(());
        };
        let window = IP_WINDOW.as_millis() as i64;
        let hits = self.store.hit(&action.key(ip), window, now_ms()).await?;
        if hits > i64::from(self.settings.ip_requests_per_minute) {
            tracing::warn!(ip = %ip.0, ?action, "per-IP rate limit reached");
            return Err(AppError::RateLimited);
        }
        Ok(())
    }

    /// Takes one sign-in attempt for `email` from `ip`, counted as a failure until
    /// [`Self::sign_in_succeeded`] says otherwise. Counting and checking are one statement, so
    /// guesses sent concurrently (to any instance) cannot all pass the check.
    pub(super) async fn sign_in_attempt(
        &self,
        email: &str,
        ip: Option<ClientIp>,
    ) -> Result<(), AppError> {
        let window = self.settings.sign_in_window.as_millis() as i64;
        let attempts = self
            .store
            .hit(&guesser_key(email, ip), window, now_ms())
            .await?;
        if attempts > i64::from(self.settings.sign_in_attempts) {
            return Err(AppError::SignInRateLimited);
        }
        Ok(())
    }

    pub(super) async fn sign_in_succeeded(&self, email: &str, ip: Option<ClientIp>) {
        if let Err(e) = self.store.clear_hits(&guesser_key(email, ip)).await {
            tracing::warn!(error = %e, "could not clear failed sign-ins");
        }
    }

    /// Forgets counters whose windows are over (the background beat calls it).
    pub async fn forget_idle_limits(&self) {
        let longest = self.settings.sign_in_window.max(IP_WINDOW);
        let before = now_ms() - longest.as_millis() as i64;
        if let Err(e) = self.store.forget_hits_before(before).await {
            tracing::warn!(error = %e, "could not forget old rate-limit counters");
        }
    }
}
