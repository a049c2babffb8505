//! `auth-bench`: what one token verification costs, with and without the verification cache.
//!
//! Run: `cargo run --release --bin auth-bench [-- ITERATIONS]`. Uses the dev issuer (a fresh
//! RSA-2048 key in a temporary directory) so it needs no network. Scenarios, single thread:
//! - `no cache`: full RS256 verification + claim checks every time;
//! - `cache, hit`: the same token again (a client sending its token on each request);
//! - `cache, miss`: a new token every time (worst case: hashing + insert on top of verifying);
//! - `cache, mixed`: 1,000 users each sending their token 20 times (95% hits).

use std::time::{Duration, Instant};

use auto_order::auth::{AuthSettings, Authenticator};

fn main() -> anyhow::Result<()> {
    let iterations: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(iterations))
}

async fn run(iterations: u32) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("auto-order-auth-bench-{}", std::process::id()));
    let uncached = Authenticator::start(AuthSettings {
        verify_cache_capacity: 0,
        ..AuthSettings::dev(&dir)
    })
    .await?;
    let cached = Authenticator::start(AuthSettings::dev(&dir)).await?;
    let issuer = uncached.dev_issuer().expect("dev mode");
    let permissions = ["read:products".to_owned(), "admin:sync".to_owned()];
    let ttl = Duration::from_secs(3600);
    let token = issuer.mint("auth0|bench", &permissions, ttl)?;
    let distinct: Vec<String> = (0..1_000)
        .map(|i| issuer.mint(&format!("auth0|user-{i}"), &permissions, ttl))
        .collect::<anyhow::Result<_>>()?;
    println!(
        "token length: {} bytes; {iterations} iterations per scenario",
        token.len()
    );

    let no_cache = measure(iterations, |_| uncached.verify(&token)).await?;
    report("no cache", no_cache);

    cached.verify(&token).await?;
    let hit = measure(iterations, |_| cached.verify(&token)).await?;
    report("cache, hit", hit);

    let misses = Authenticator::start(AuthSettings::dev(&dir)).await?;
    let miss = measure(distinct.len() as u32, |i| {
        misses.verify(&distinct[i as usize])
    })
    .await?;
    report("cache, miss", miss);

    let mixed_auth = Authenticator::start(AuthSettings::dev(&dir)).await?;
    let mixed = measure(iterations, |i| {
        mixed_auth.verify(&distinct[(i as usize) % distinct.len()])
    })
    .await?;
    report("cache, mixed (95% hits)", mixed);

    println!(
        "speed-up of a cache hit over a full verification: {:.0}x",
        no_cache.as_secs_f64() / hit.as_secs_f64()
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// Mean time of one call of `f(i)` over `n` calls.
async fn measure<F, Fut, T>(n: u32, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, auto_order::auth::AuthError>>,
{
    let start = Instant::now();
    for i in 0..n {
        std::hint::black_box(f(i).await?);
    }
    Ok(start.elapsed() / n)
}

fn report(name: &str, per_call: Duration) {
    let ns = per_call.as_nanos();
    println!(
        "{name:<26} {:>9.2} µs/verification  {:>12.0} verifications/s",
        ns as f64 / 1_000.0,
        1e9 / ns.max(1) as f64
    );
}
