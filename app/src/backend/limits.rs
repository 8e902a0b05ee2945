//! Rate limits: per client IP on the actions worth abusing (sign-up, sign-in, Add card), and per
//! account *and* IP on failed sign-ins.
//!
//! Why both: a per-account lock alone lets anyone lock the real owner out by typing wrong
//! passwords for their email (six tries used to do it for 15 minutes). Failures are counted per
//! (email, client IP), so an attacker locks only their own address out; the per-IP limits bound
//! how fast any one address can guess across accounts or pile up tokenization URLs.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::Mutex,
    time::{Duration, Instant},
};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::AppError;
use crate::session::ClientIp;

/// What is limited per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SignUp,
    SignIn,
    AddCard,
}

/// One GCRA limiter per action, keyed by client IP.
pub struct IpLimits {
    sign_up: DefaultKeyedRateLimiter<IpAddr>,
    sign_in: DefaultKeyedRateLimiter<IpAddr>,
    add_card: DefaultKeyedRateLimiter<IpAddr>,
}

impl IpLimits {
    /// `per_minute` requests of each action per IP, as a burst that refills evenly.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least one");
        let limiter = || RateLimiter::keyed(Quota::per_minute(per_minute));
        Self {
            sign_up: limiter(),
            sign_in: limiter(),
            add_card: limiter(),
        }
    }

    /// Takes one request of `action` for `ip`. Without an address (a call from inside the
    /// server, e.g. seeding) nothing is limited.
    pub fn check(&self, action: Action, ip: Option<ClientIp>) -> Result<(), AppError> {
        let Some(ClientIp(ip)) = ip else {
            return Ok(());
        };
        let limiter = match action {
            Action::SignUp => &self.sign_up,
            Action::SignIn => &self.sign_in,
            Action::AddCard => &self.add_card,
        };
        limiter.check_key(&ip).map_err(|_| {
            tracing::warn!(%ip, ?action, "per-IP rate limit reached");
            AppError::RateLimited
        })
    }

    /// Forgets addresses whose budget is full again, so memory stays bounded.
    pub fn forget_idle(&self) {
        self.sign_up.retain_recent();
        self.sign_in.retain_recent();
        self.add_card.retain_recent();
    }
}

/// Who is guessing at which account.
type Guesser = (String, Option<IpAddr>);

/// Counts failed sign-ins per (email, client IP) within a window. Check and count happen under
/// one lock, so guesses sent concurrently cannot all pass the check while the first ones are
/// still verifying their password.
pub struct SignInLimiter {
    limit: u32,
    window: Duration,
    /// Failures and when the window started, per guesser.
    failures: Mutex<HashMap<Guesser, (u32, Instant)>>,
}

impl SignInLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one attempt for `email` from `ip`, counted as a failure until
    /// [`Self::succeeded`] says otherwise.
    pub fn attempt(&self, email: &str, ip: Option<ClientIp>) -> Result<(), AppError> {
        let mut failures = self.failures.lock().expect("limiter poisoned");
        // Bound the memory a flood of made-up addresses can take.
        if failures.len() >= 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let entry = failures
            .entry((email.to_owned(), ip.map(|ip| ip.0)))
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

    pub fn succeeded(&self, email: &str, ip: Option<ClientIp>) {
        self.failures
            .lock()
            .expect("limiter poisoned")
            .remove(&(email.to_owned(), ip.map(|ip| ip.0)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<ClientIp> {
        Some(ClientIp(IpAddr::from([192, 0, 2, last])))
    }

    #[test]
    fn sign_in_failures_lock_only_the_guessing_address() {
        let l = SignInLimiter::new(2, Duration::from_secs(60));
        assert!(l.attempt("a", ip(1)).is_ok());
        assert!(l.attempt("a", ip(1)).is_ok());
        assert!(matches!(
            l.attempt("a", ip(1)),
            Err(AppError::SignInRateLimited)
        ));
        // The owner, elsewhere, is not locked out; nor is another account from the attacker.
        assert!(l.attempt("a", ip(2)).is_ok());
        assert!(l.attempt("b", ip(1)).is_ok());
        l.succeeded("a", ip(1));
        assert!(l.attempt("a", ip(1)).is_ok());
    }

    #[test]
    fn ip_limits_are_per_address_and_per_action() {
        let limits = IpLimits::new(3);
        for _ in 0..3 {
            limits.check(Action::SignUp, ip(1)).unwrap();
        }
        assert!(matches!(
            limits.check(Action::SignUp, ip(1)),
            Err(AppError::RateLimited)
        ));
        limits.check(Action::SignUp, ip(2)).unwrap();
        limits.check(Action::SignIn, ip(1)).unwrap();
        // Calls from inside the server carry no address and are never limited.
        for _ in 0..10 {
            limits.check(Action::SignUp, None).unwrap();
        }
    }
}
