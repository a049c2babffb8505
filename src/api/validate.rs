//! Field checks shared by the request types, each failing with a 422 that names the field.
//!
//! PATCH bodies tell "absent" (leave unchanged) from `null` (clear) with
//! `Option<Option<T>>` fields deserialized by [`double_option`].

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

/// Text of `min..=max` characters (not bytes).
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ApiError> {
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
