//! Next-purchase prediction from a product's order history. Pure: no I/O, no clock.
//!
//! A purchase of `q` units "covers" the time until the next purchase, so the consumption
//! rate over the history is
//!
//! ```text
//! rate (units/day) = (sum of quantities except the last) / (days from first to last purchase)
//! ```
//!
//! and the last purchase of `q_last` units lasts `q_last / rate` days:
//! `next = last.ordered_at + q_last / rate`.
//!
//! The range comes from the spread of the per-interval rates `q_i / (t_{i+1} - t_i)`: the
//! fastest interval gives the earliest date, the slowest the latest. Both are at or after
//! the last purchase. With one interval the range is the single predicted date.
//! See `docs/PREDICTIONS.md`.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Serialize;

const SECONDS_PER_DAY: f64 = 86_400.0;

/// One purchase of a product: when, and how many units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purchase {
    pub at: DateTime<Utc>,
    pub quantity: u32,
}

/// A prediction for one product.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Prediction {
    /// The most likely date the product runs out (and is bought again).
    pub next_purchase_at: DateTime<Utc>,
    /// From the fastest observed interval; never before the last purchase.
    pub earliest_at: DateTime<Utc>,
    /// From the slowest observed interval.
    pub latest_at: DateTime<Utc>,
    /// Units consumed per day over the whole history.
    pub daily_rate: f64,
    pub purchases_used: usize,
    pub last_purchase_at: DateTime<Utc>,
}

/// Why no prediction could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoPrediction {
    /// Fewer than two purchases: there is no interval to learn from.
    NotEnoughPurchases,
    /// Every purchase happened at the same instant: no time has passed to measure a rate.
    NoTimeBetweenPurchases,
}

impl NoPrediction {
    pub fn message(self) -> &'static str {
        match self {
            NoPrediction::NotEnoughPurchases => {
                "at least two purchases are needed to predict the next one"
            }
            NoPrediction::NoTimeBetweenPurchases => {
                "all purchases happened at the same time; no consumption rate can be measured"
            }
        }
    }
}

/// Predicts the next purchase from `history`, which must be ordered by time (oldest first).
pub fn predict(history: &[Purchase]) -> Result<Prediction, NoPrediction> {
    let (first, last) = match history {
        [first, .., last] => (first, last),
        _ => return Err(NoPrediction::NotEnoughPurchases),
    };
    let span_days = days(last.at - first.at);
    if span_days <= 0.0 {
        return Err(NoPrediction::NoTimeBetweenPurchases);
    }
    let consumed: f64 = history[..history.len() - 1]
        .iter()
        .map(|p| f64::from(p.quantity))
        .sum();
    let rate = consumed / span_days;

    // Per-interval rates; intervals of zero length (two purchases at one instant) say
    // nothing about speed and are skipped. span_days > 0 leaves at least one.
    let (mut fastest, mut slowest) = (f64::MIN, f64::MAX);
    for pair in history.windows(2) {
        let dt = days(pair[1].at - pair[0].at);
        if dt > 0.0 {
            let r = f64::from(pair[0].quantity) / dt;
            fastest = fastest.max(r);
            slowest = slowest.min(r);
        }
    }

    let q_last = f64::from(last.quantity);
    let after_last = |rate: f64| last.at + from_days(q_last / rate);
    let next = after_last(rate);
    Ok(Prediction {
        next_purchase_at: next,
        earliest_at: after_last(fastest).clamp(last.at, next),
        latest_at: after_last(slowest).max(next),
        daily_rate: rate,
        purchases_used: history.len(),
        last_purchase_at: last.at,
    })
}

fn days(d: ChronoDuration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0 / SECONDS_PER_DAY
}

fn from_days(days: f64) -> ChronoDuration {
    // Capped at 100 years: a product bought once in a decade must not overflow.
    let seconds = (days * SECONDS_PER_DAY).min(100.0 * 365.0 * SECONDS_PER_DAY);
    ChronoDuration::milliseconds((seconds * 1000.0).round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(n: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + ChronoDuration::days(n)
    }

    fn buy(on: i64, quantity: u32) -> Purchase {
        Purchase {
            at: day(on),
            quantity,
        }
    }

    #[test]
    fn regular_purchases_predict_the_same_interval_again() {
        let p = predict(&[buy(0, 1), buy(10, 1), buy(20, 1)]).unwrap();

        assert_eq!(p.next_purchase_at, day(30));
        assert_eq!(p.earliest_at, day(30));
        assert_eq!(p.latest_at, day(30));
        assert!((p.daily_rate - 0.1).abs() < 1e-9);
        assert_eq!(p.purchases_used, 3);
        assert_eq!(p.last_purchase_at, day(20));
    }

    #[test]
    fn two_units_last_about_twice_as_long_as_one() {
        let one = predict(&[buy(0, 1), buy(10, 1), buy(20, 1)]).unwrap();
        let two = predict(&[buy(0, 1), buy(10, 1), buy(20, 2)]).unwrap();

        assert_eq!(one.next_purchase_at - day(20), ChronoDuration::days(10));
        assert_eq!(two.next_purchase_at - day(20), ChronoDuration::days(20));
    }

    #[test]
    fn quantities_weight_the_rate() {
        // 3 units covered 30 days, then 1 unit covered 10 days: 4 units in 40 days.
        let p = predict(&[buy(0, 3), buy(30, 1), buy(40, 2)]).unwrap();

        assert!((p.daily_rate - 0.1).abs() < 1e-9);
        assert_eq!(p.next_purchase_at, day(60));
    }

    #[test]
    fn fewer_than_two_purchases_give_no_prediction() {
        assert_eq!(predict(&[]), Err(NoPrediction::NotEnoughPurchases));
        assert_eq!(predict(&[buy(0, 5)]), Err(NoPrediction::NotEnoughPurchases));
    }

    #[test]
    fn purchases_at_one_instant_give_no_prediction() {
        assert_eq!(
            predict(&[buy(3, 1), buy(3, 2)]),
            Err(NoPrediction::NoTimeBetweenPurchases)
        );
    }

    #[test]
    fn irregular_intervals_give_a_range_around_the_prediction() {
        // One unit lasted 5 days, then 15 days: rate 2/20 = 0.1/day.
        let p = predict(&[buy(0, 1), buy(5, 1), buy(20, 1)]).unwrap();

        assert_eq!(p.next_purchase_at, day(30));
        assert_eq!(p.earliest_at, day(25));
        assert_eq!(p.latest_at, day(35));
        assert!(p.earliest_at >= p.last_purchase_at);
    }

    #[test]
    fn a_double_entry_at_one_instant_still_predicts() {
        let p = predict(&[buy(0, 1), buy(0, 1), buy(20, 1)]).unwrap();

        assert_eq!(p.next_purchase_at, day(30));
        assert!(p.earliest_at <= p.next_purchase_at && p.next_purchase_at <= p.latest_at);
    }
}
