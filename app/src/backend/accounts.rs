//! Sign-up, sign-in and the demo customer. Passwords are hashed with argon2; input is parsed into
//! types that can only hold valid values.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use argon2::{
    password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};

use super::{AppError, Backend};

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

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Counts failed sign-ins per email within a window. In memory: an attacker spreading attempts
/// over several instances gets a few more tries, which argon2's cost still makes slow.
pub struct SignInLimiter {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl SignInLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `key`, counted as a failure until [`Self::succeeded`] says
    /// otherwise. Check and count happen under one lock, so guesses sent concurrently cannot all
    /// pass the check while the first ones are still verifying their password.
    fn attempt(&self, key: &str) -> Result<(), AppError> {
        let mut failures = self.failures.lock().expect("limiter poisoned");
        // Bound the memory a flood of made-up addresses can take.
        if failures.len() >= 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let entry = failures
            .entry(key.to_owned())
            .or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, Instant::now());
        }
        if entry.0 >= self.limit {
            return Err(AppError::SignInRateLimited);
        }
        entry.0 += 1;
        Ok(())
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().expect("limiter poisoned").remove(key);
    }
}

impl Backend {
    /// Creates an account; returns the new customer's id.
    pub async fn sign_up(
        &self,
        name: &str,
        email: &str,
        password: String,
    ) -> Result<String, AppError> {
        let name = Name::parse(name)?;
        let email = Email::parse(email)?;
        let password = Password::parse(password)?;
        let hash = hash_password(&password)?;
        let id = uuid::Uuid::new_v4().to_string();
        self.store
            .insert_customer(&id, email.as_str(), &name.0, &hash)
            .await?;
        tracing::info!(customer = %id, "customer signed up");
        Ok(id)
    }

    /// Checks credentials; returns the customer's id.
    pub async fn sign_in(&self, email: &str, password: &str) -> Result<String, AppError> {
        let email = Email::parse(email).map_err(|_| AppError::WrongCredentials)?;
        self.sign_in_limiter.attempt(email.as_str())?;
        let customer = self.store.customer_by_email(email.as_str()).await?;
        match customer {
            Some(c) if verify_password(password, &c.password_hash) => {
                self.sign_in_limiter.succeeded(email.as_str());
                Ok(c.id)
            }
            _ => Err(AppError::WrongCredentials),
        }
    }

    /// Makes sure the demo customer exists (development only).
    pub async fn seed_demo_customer(&self) -> Result<(), AppError> {
        if self.store.customer_by_email(DEMO_EMAIL).await?.is_none() {
            match self
                .sign_up("Demo Customer", DEMO_EMAIL, DEMO_PASSWORD.into())
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
    fn limiter_blocks_after_limit() {
        let l = SignInLimiter::new(2, Duration::from_secs(60));
        assert!(l.attempt("a").is_ok());
        assert!(l.attempt("a").is_ok());
        assert!(matches!(l.attempt("a"), Err(AppError::SignInRateLimited)));
        assert!(l.attempt("b").is_ok());
        l.succeeded("a");
        assert!(l.attempt("a").is_ok());
    }
}
