//! Per-IP and per-user rate limits: at most `RATE_LIMIT_MAX` requests per
//! `RATE_LIMIT_WINDOW_MS` for each client IP and for each user; past it, 429 with
//! `Retry-After`. `/api/health` and `/metrics` are exempt (probes and scrapers);
//! `/api/health/db` is not.
//!
//! # Keys
//! - **IP**: the `Fly-Client-IP` header only when told to trust it (`TRUST_FLY_CLIENT_IP`:
//!   Fly's proxy sets it and clients cannot forge it past the proxy); otherwise the socket
//!   peer. Running on Fly (`FLY_REGION`) is not enough: a machine reached another way (its
//!   private address, a second service) would let every request name its own key.
//!   IPv6 clients are keyed by their /64, which one client can rotate within freely.
//! - **User**: the `sub` of a *verified* token. The middleware verifies the bearer token
//!   itself (the verifier caches successes, so this is the verification the handler would
//!   do anyway: a cached one is looked up without waiting, only a miss goes async) and
//!   leaves the [`AuthUser`](crate::auth::AuthUser) in the request extensions, where the
//!   extractor picks it up instead of verifying again. An unverified `sub` is never used: a forged
//!   token could otherwise exhaust another user's budget. Invalid tokens are left for the
//!   extractor to reject; they still count against their IP.
//!
//! # Algorithm
//! GCRA (the generic cell rate algorithm, as in `governor`): one instant per key, the
//! "theoretical arrival time". It allows a burst of `max` and then one request every
//! `window / max`, and gives an exact `Retry-After`. The keys live in a bounded `moka` cache
//! (already a dependency) that forgets a key after one idle window, at which point its
//! state would have reset anyway; `governor`'s keyed limiter would need its own periodic
//! clean-up task and one more dependency for the same behaviour.

use std::convert::Infallible;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use moka::sync::Cache;
use tower::{Layer, Service};

use super::{BoxedResponse, answered};
use crate::api::metrics::Metrics;
use crate::auth::{Authenticator, bearer_token};
use crate::error::ApiError;

/// Most keys tracked at once per limiter; beyond it the least recently used are forgotten.
const MAX_KEYS: u64 = 100_000;

pub const FLY_CLIENT_IP: &str = "fly-client-ip";

/// A keyed GCRA limiter.
pub struct Limiter<K> {
    keys: Cache<K, Arc<Mutex<Instant>>>,
    /// Time "spent" by one request: window / max.
    interval: Duration,
    /// How far ahead of now the arrival time may run: window - interval (a burst of max).
    tolerance: Duration,
}

impl<K: Hash + Eq + Send + Sync + 'static> Limiter<K> {
    pub fn new(max: u32, window: Duration) -> Limiter<K> {
        let interval = window / max.max(1);
        Limiter {
            keys: Cache::builder()
                .max_capacity(MAX_KEYS)
                .time_to_idle(window.max(Duration::from_secs(1)))
                .build(),
            interval,
            tolerance: window.saturating_sub(interval),
        }
    }

    /// Counts one request of `key`: `Err(wait)` if it is over the limit.
    pub fn check<Q>(&self, key: &Q) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.check_at(key, Instant::now())
    }

    fn check_at<Q>(&self, key: &Q, now: Instant) -> Result<(), Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let cell = self.keys.get_with_by_ref(key, || Arc::new(Mutex::new(now)));
        let mut tat = cell.lock().unwrap_or_else(|p| p.into_inner());
        let arrival = (*tat).max(now);
        let ahead = arrival - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        *tat = arrival + self.interval;
        Ok(())
    }
}

/// The middleware's state.
pub struct RateLimit {
    per_ip: Limiter<IpAddr>,
    per_user: Limiter<String>,
    /// Trust `Fly-Client-IP` (`TRUST_FLY_CLIENT_IP`).
    behind_fly_proxy: bool,
    api_version: String,
    auth: Authenticator,
    metrics: Metrics,
}

impl RateLimit {
    pub fn new(
        max: u32,
        window: Duration,
        behind_fly_proxy: bool,
        api_version: &str,
        auth: Authenticator,
        metrics: Metrics,
    ) -> Arc<RateLimit> {
        Arc::new(RateLimit {
            per_ip: Limiter::new(max, window),
            per_user: Limiter::new(max, window),
            behind_fly_proxy,
            api_version: api_version.to_owned(),
            auth,
            metrics,
        })
    }

    fn exempt(&self, path: &str) -> bool {
        let api = path
            .strip_prefix("/api")
            .map(|rest| {
                rest.strip_prefix('/')
                    .and_then(|r| r.strip_prefix(self.api_version.as_str()))
                    .unwrap_or(rest)
            })
            .unwrap_or("");
        // Not `/health/db`: it queries both databases, and needs a token besides.
        path == "/metrics" || api == "/health"
    }
}

/// The layer: 429 past either limit.
#[derive(Clone)]
pub struct RateLimitLayer(pub Arc<RateLimit>);

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            limits: self.0.clone(),
            inner,
        }
    }
}

/// The service beneath, rate limited.
#[derive(Clone)]
pub struct RateLimited<S> {
    limits: Arc<RateLimit>,
    inner: S,
}

impl<S> Service<Request> for RateLimited<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxedResponse>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let rl = &self.limits;
        if rl.exempt(req.uri().path()) {
            return Either::Left(self.inner.call(req));
        }
        if let Err(wait) = rl.per_ip.check(&client_ip(&req, rl.behind_fly_proxy)) {
            rl.metrics.record_rate_limited("ip");
            return Either::Right(too_many(wait));
        }
        // The common case decides without waiting: no token, or one verified earlier and
        // still cached. Only a token to verify (which may refetch the JWKS) goes async.
        let user = match bearer_token(req.headers()).ok() {
            None => None,
            Some(token) => match rl.auth.verify_cached(token) {
                Some(user) => Some(user),
                None => return Either::Right(self.verify_then_call(req)),
            },
        };
        if let Some(user) = user {
            if let Err(wait) = rl.per_user.check(user.sub.as_str()) {
                rl.metrics.record_rate_limited("user");
                return Either::Right(too_many(wait));
            }
            req.extensions_mut().insert(user);
        }
        Either::Left(self.inner.call(req))
    }
}

impl<S> RateLimited<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    /// Verifies the bearer token (a verification cache miss), counts its user, then calls
    /// the inner service. Invalid tokens are left for the extractor to reject.
    fn verify_then_call(&mut self, mut req: Request) -> BoxedResponse {
        // The inner service is called from the future, so it moves there (the ready one; a
        // clone stays).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let rl = self.limits.clone();
        Box::pin(async move {
            if let Ok(token) = bearer_token(req.headers())
                && let Ok(user) = rl.auth.verify(token).await
            {
                if let Err(wait) = rl.per_user.check(user.sub.as_str()) {
                    rl.metrics.record_rate_limited("user");
                    return Ok(too_many_response(wait));
                }
                req.extensions_mut().insert(user);
            }
            inner.call(req).await
        })
    }
}

fn too_many_response(retry_after: Duration) -> Response {
    ApiError::TooManyRequests { retry_after }.into_response()
}

fn too_many(retry_after: Duration) -> BoxedResponse {
    answered(too_many_response(retry_after))
}

/// The client's address as a limiter key (see the module docs): IPv6 clients by their /64.
fn client_ip(req: &Request, behind_fly_proxy: bool) -> IpAddr {
    let from_fly = behind_fly_proxy
        .then(|| req.headers().get(FLY_CLIENT_IP))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let ip = from_fly.or_else(|| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    });
    match ip {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        Some(ip) => ip,
        // No address at all (not served from a socket): one shared key.
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_max_passes_then_the_next_waits_one_interval() {
        let limiter = Limiter::<String>::new(5, Duration::from_secs(60));
        let now = Instant::now();

        for _ in 0..5 {
            assert!(limiter.check_at("k", now).is_ok());
        }
        let wait = limiter.check_at("k", now).unwrap_err();

        assert_eq!(wait, Duration::from_secs(12));
        assert!(limiter.check_at("other", now).is_ok(), "keys are separate");
        assert!(
            limiter.check_at("k", now + wait).is_ok(),
            "one request later"
        );
    }

    #[test]
    fn a_refused_request_does_not_use_the_budget() {
        let limiter = Limiter::<String>::new(1, Duration::from_secs(10));
        let now = Instant::now();

        assert!(limiter.check_at("k", now).is_ok());
        assert!(limiter.check_at("k", now).is_err());
        assert!(limiter.check_at("k", now).is_err());

        assert!(limiter.check_at("k", now + Duration::from_secs(10)).is_ok());
    }
}
