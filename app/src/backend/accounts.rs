//! Sign-up, sign-in and the demo customer. Passwords are hashed with argon2; input is parsed into
//! types that can only hold valid values.

use std::sync::OnceLock;

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

use super::{limits::Action, AppError, Backend, CustomerId};
use crate::session::ClientIp;

/// Seeded in development so the flow can be tried at once; shown on the sign-in page in dev only.
pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "demo-password";

/// A trimmed, lower-cased address with one `@` and a dot in the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            })
            && !email.contains(char::is_whitespace);
        if valid {
            Ok(Self(email))
        } else {
            Err(AppError::InvalidInput(
                "Enter an email address like name@example.com.".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters.
pub struct Password(String);

impl Password {
    pub fn parse(raw: String) -> Result<Self, AppError> {
        match raw.chars().count() {
            0..=7 => Err(AppError::InvalidInput(
                "Choose a password of at least 8 characters.".into(),
            )),
            129.. => Err(AppError::InvalidInput(
                "Choose a password of at most 128 characters.".into(),
            )),
            _ => Ok(Self(raw)),
        }
    }
}

/// A display name of 1 to 100 characters.
pub struct Name(String);

impl Name {
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let name = raw.trim();
        match name.chars().count() {
            0 => Err(AppError::InvalidInput("Enter your name.".into())),
            101.. => Err(AppError::InvalidInput(
                "Enter a name of at most 100 characters.".into(),
            )),
            _ => Ok(Self(name.to_owned())),
        }
    }
}

fn hash_password(password: &Password) -> Result<String, AppError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.0.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))
}

/// A hash of a password nobody has, checked when the email is unknown, so that "no such account"
/// takes as long as "wrong password" and the timing does not reveal who has an account.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password(&Password("not anyone's password".into())).expect("argon2 hashes")
    })
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Backend {
    /// Runs argon2 (tens of ms of CPU and ~19 MiB each) on the blocking pool, a few at a time:
    /// on the async workers, a burst of sign-ups would stall webhooks and every page.
    async fn argon2<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        let _permit = self
            .hashing
            .acquire()
            .await
            .map_err(|_| AppError::Internal("hashing semaphore closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| AppError::Internal(format!("argon2 task: {e}")))
    }

    /// Creates an account; returns the new customer's id.
    pub async fn sign_up(
        &self,
        name: &str,
        email: &str,
        password: String,
        ip: Option<ClientIp>,
    ) -> Result<CustomerId, AppError> {
        self.check_ip_limit(Action::SignUp, ip).await?;
        let name = Name::parse(name)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let hash = self.argon2(move || hash_password(&password)).await??;
        let id = CustomerId::generate();
        self.store
            .insert_customer(&id, email.as_str(), &name.0, &hash)
            .await?;
        tracing::info!(customer = %id, "customer signed up");
        Ok(id)
    }

    /// Checks credentials; returns the customer's id.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        ip: Option<ClientIp>,
    ) -> Result<CustomerId, AppError> {
        let result = self.check_sign_in(email, password, ip).await;
        if let Err(e) = &result {
            let reason = match e {
                AppError::WrongCredentials => "wrong_credentials",
                AppError::SignInRateLimited => "locked",
                AppError::RateLimited => "address_limit",
                _ => "error",
            };
            metrics::counter!("sign_in_refusals_total", "reason" => reason).increment(1);
        }
        result
    }

    async fn check_sign_in(
        &self,
        email: &str,
        password: &str,
        ip: Option<ClientIp>,
    ) -> Result<CustomerId, AppError> {
        self.check_ip_limit(Action::SignIn, ip).await?;
        let email = Email::parse(email).map_err(|_| AppError::WrongCredentials)?;
        self.sign_in_attempt(email.as_str(), ip).await?;
        let customer = self.store.customer_by_email(email.as_str()).await?;
        let (id, hash) = match customer {
            Some(c) => (Some(c.id), c.password_hash),
            None => (None, String::new()),
        };
        let password = password.to_owned();
        let matches = self
            .argon2(move || {
                let hash = if hash.is_empty() { dummy_hash() } else { &hash };
                verify_password(&password, hash)
            })
            .await?;
        match id {
            Some(id) if matches => {
                self.sign_in_succeeded(email.as_str(), ip).await;
                Ok(id)
            }
            _ => Err(AppError::WrongCredentials),
        }
    }

    /// Makes sure the demo customer exists (development only).
    pub async fn seed_demo_customer(&self) -> Result<(), AppError> {
        if self.store.customer_by_email(DEMO_EMAIL).await?.is_none() {
            match self
                .sign_up("Demo Customer", DEMO_EMAIL, DEMO_PASSWORD.into(), None)
                .await
            {
                Ok(_) | Err(AppError::EmailTaken) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" A@Example.com ").unwrap().as_str(),
            "a@example.com"
        );
        for bad in ["", "a", "a@b", "@b.com", "a@.com", "a b@c.com", "a@b.com."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short".into()).is_err());
        assert!(Password::parse("long enough".into()).is_ok());
        assert!(Password::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn hashes_verify() {
        let p = Password::parse("correct horse".into()).unwrap();
        let h = hash_password(&p).unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse!", &h));
    }

    #[test]
    fn dummy_hash_verifies_nothing() {
        assert!(!verify_password("not anyone's password!", dummy_hash()));
        assert!(dummy_hash().starts_with("$argon2"));
    }
}
