//! Field checks shared by the request types, each failing with a 422 that names the field.
//!
//! PATCH bodies tell "absent" (leave unchanged) from `null` (clear) with
//! `Option<Option<T>>` fields deserialized by [`double_option`].

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer};

use crate::error::ApiError;

/// `#[serde(default, deserialize_with = "double_option")]`: absent → `None`,
/// `null` → `Some(None)`, a value → `Some(Some(v))`.
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A PATCH value for a field that cannot be null: `null` is refused.
pub fn not_null<T>(field: &str, value: Option<Option<T>>) -> Result<Option<T>, ApiError> {
    match value {
        Some(None) => Err(ApiError::invalid(field, "must not be null")),
        Some(Some(v)) => Ok(Some(v)),
        None => Ok(None),
    }
}

/// Text Postgres can store: no NUL character (a `text` value cannot hold one; the write
/// would fail with an internal error).
pub fn storable(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

/// An RFC 3339 date-time in years 1 to 9999 once in UTC: Postgres would store year 0 as
/// 1 BC, and neither that nor a five-digit year reads back into the replica's canonical form.
pub fn timestamp(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .filter(|t| (1..=9999).contains(&t.year()))
        .ok_or_else(|| {
            ApiError::invalid(field, "must be an RFC 3339 date-time in years 0001 to 9999")
        })
}

/// Text of `min..=max` characters (not bytes), without NUL characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
    storable(field, value)?;
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::invalid(
            field,
            match min {
                0 => format!("must be at most {max} characters"),
                _ => format!("must be {min} to {max} characters"),
            },
        ));
    }
    Ok(())
}

/// A non-blank name of 1..=`max` characters.
pub fn name(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "must not be blank"));
    }
    text(field, value, 1, max)
}

/// An integer in `min..=max`, as the column's `i32`.
pub fn int(field: &str, value: i64, min: i64, max: i64) -> Result<i32, ApiError> {
    if value < min || value > max {
        return Err(ApiError::invalid(
            field,
            format!("must be between {min} and {max}"),
        ));
    }
    Ok(value as i32)
}

/// An ISO 4217-shaped currency code: three uppercase letters.
pub fn currency(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            "must be three uppercase letters, e.g. EUR",
        ))
    }
}
