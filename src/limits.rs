//! Abuse limits: SENDs per WKProto connection, REST requests per credential, and connections per
//! client address. Each refusal is a clear answer (SENDACK or CONNACK reason 22 `RateLimit`, HTTP 429
//! with `Retry-After`), never a silent drop. Token buckets come from `governor`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Config;

/// The server's limits, shared by the gateway and the REST API.
pub struct Limits {
    send: Option<Quota>,
    api: Option<DefaultKeyedRateLimiter<String>>,
    connections_per_ip: usize,
    connections: Mutex<HashMap<IpAddr, usize>>,
}

/// A per-connection SEND budget.
pub type SendLimiter = DefaultDirectRateLimiter;

/// A counted connection from one address; the count drops with it.
pub struct ConnectionPermit {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self.limits.connections.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

fn quota(per_second: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_second)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

impl Limits {
    /// The limits `config` asks for (0 turns a limit off).
    pub fn new(config: &Config) -> Limits {
        Limits {
            send: quota(config.send_rate_limit, config.send_rate_burst),
            api: quota(config.api_rate_limit, config.api_rate_burst).map(RateLimiter::keyed),
            connections_per_ip: config.max_connections_per_ip,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// A fresh SEND budget for one connection, or `None` when SENDs are not limited.
    pub fn send_limiter(&self) -> Option<SendLimiter> {
        self.send.map(RateLimiter::direct)
    }

    /// Takes one REST request from `credential`'s budget; `Err` says how long until the next one fits.
    ///
    /// # Errors
    /// The wait when the budget is spent.
    pub fn check_api(&self, credential: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.api else { return Ok(()) };
        limiter.check_key(&credential.to_owned()).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Counts a new connection from `ip`, or `None` when that address already has the most allowed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionPermit> {
        let mut open = self.connections.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if self.connections_per_ip > 0 && *n >= self.connections_per_ip {
            return None;
        }
        *n += 1;
        Some(ConnectionPermit { limits: self.clone(), ip })
    }

    /// Drops the per-credential state of credentials idle long enough to have a full budget again.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.api {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refuses_past_its_budget_and_zero_turns_it_off() {
        let config = Config { send_rate_limit: 2, send_rate_burst: 3, api_rate_limit: 1, api_rate_burst: 2, max_connections_per_ip: 2, ..Config::default() };
        let limits = Arc::new(Limits::new(&config));
        let send = limits.send_limiter().unwrap();
        assert_eq!((0..5).filter(|_| send.check().is_ok()).count(), 3, "the burst, then nothing within the same instant");
        assert!(limits.check_api("a").is_ok() && limits.check_api("a").is_ok());
        let wait = limits.check_api("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(limits.check_api("b").is_ok(), "budgets are per credential");
        let ip: IpAddr = [10, 0, 0, 1].into();
        let (a, b) = (limits.admit(ip).unwrap(), limits.admit(ip).unwrap());
        assert!(limits.admit(ip).is_none());
        assert!(limits.admit([10, 0, 0, 2].into()).is_some(), "per address");
        drop(a);
        assert!(limits.admit(ip).is_some(), "a closed connection frees its slot");
        drop(b);

        let off = Arc::new(Limits::new(&Config { send_rate_limit: 0, api_rate_limit: 0, max_connections_per_ip: 0, ..Config::default() }));
        assert!(off.send_limiter().is_none());
        assert!((0..10_000).all(|_| off.check_api("a").is_ok()));
        let permits: Vec<_> = (0..10_000).map(|_| off.admit(ip).unwrap()).collect();
        assert_eq!(permits.len(), 10_000);
    }
}
