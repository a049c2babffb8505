//! Turning Postgres values into the replica's SQLite values.
//!
//! Two paths reach the replica: change rows carry a JSON row image (`to_jsonb(new)`, written
//! by the trigger with timezone UTC) and the snapshot carries binary `COPY` rows. Both end in
//! the same canonical form, so a row looks identical whichever way it arrived.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value;
use tokio_postgres::binary_copy::BinaryCopyOutRow;

use crate::catalog::{ColumnKind, Table};
use crate::error::SyncError;

/// The canonical replica form of a timestamp: fixed-width UTC with microseconds, so that
/// text order is time order.
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    // Hand-rolled: chrono's formatter showed up in resync profiles (three per row).
    use chrono::{Datelike, Timelike};
    let year = ts.year();
    if !(0..=9999).contains(&year) {
        return ts.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    let mut out = [0u8; 27];
    let mut put = |at: usize, value: u32, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, ts.month(), 2);
    put(8, ts.day(), 2);
    put(11, ts.hour(), 2);
    put(14, ts.minute(), 2);
    put(17, ts.second(), 2);
    put(20, ts.nanosecond() % 1_000_000_000 / 1000, 6);
    for (at, c) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ] {
        out[at] = c;
    }
    String::from_utf8(out.to_vec()).expect("ascii")
}

/// Decodes a JSON row image into the table's column values, in catalog order.
pub fn row_from_json(table: &Table, json: &str) -> Result<Vec<Value>, SyncError> {
    let image: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| decode_error(table, "row image", &e.to_string()))?;
    // A column added on the primary that this binary does not know: applying the rest would
    // silently drop it. Stop instead (the operator deploys the matching binary).
    let unknown: Vec<&str> = image
        .keys()
        .map(String::as_str)
        .filter(|k| !table.columns.iter().any(|c| c.name == *k))
        .collect();
    if !unknown.is_empty() {
        return Err(SyncError::fatal(format!(
            "replica schema does not match the primary: {} has columns {unknown:?} that \
             this binary does not know",
            table.name
        )));
    }
    table
        .columns
        .iter()
        .map(|column| {
            let raw = image
                .get(column.name)
                .ok_or_else(|| decode_error(table, column.name, "missing from the row image"))?;
            value_from_json(column.kind, raw).map_err(|why| decode_error(table, column.name, &why))
        })
        .collect()
}

fn value_from_json(kind: ColumnKind, raw: &serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    match (kind, raw) {
        (_, J::Null) => Ok(Value::Null),
        (ColumnKind::Uuid | ColumnKind::Text, J::String(s)) => Ok(Value::Text(s.clone())),
        (ColumnKind::Int4 | ColumnKind::Int8, J::Number(n)) => n
            .as_i64()
            .map(Value::Integer)
            .ok_or_else(|| format!("{n} is not an integer")),
        (ColumnKind::Timestamptz, J::String(s)) => parse_timestamp(s)
            .map(|t| Value::Text(format_timestamp(t)))
            .map_err(|e| format!("bad timestamp {s:?}: {e}")),
        (kind, other) => Err(format!("expected {kind:?}, got {other}")),
    }
}

/// A timestamptz as Postgres prints it in JSON: RFC 3339, except that an offset with seconds
/// (local mean time, which zones such as Europe/Paris use for dates before about 1900) is
/// printed `+HH:MM:SS`, which RFC 3339 (and chrono's parsers) have no room for. Row images
/// from the trigger are in UTC, but rows the API reads from the primary are printed in the
/// session's time zone.
fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    let rfc3339 = match DateTime::parse_from_rfc3339(s) {
        Ok(t) => return Ok(t.with_timezone(&Utc)),
        Err(e) => e,
    };
    let with_seconds = || -> Option<DateTime<Utc>> {
        let (local, offset) = s.split_at_checked(s.len().checked_sub(9)?)?;
        let b = offset.as_bytes();
        let sign = match b[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let two = |i: usize| -> Option<i64> {
            let (hi, lo) = (b[i], b[i + 1]);
            (hi.is_ascii_digit() && lo.is_ascii_digit())
                .then(|| i64::from(hi - b'0') * 10 + i64::from(lo - b'0'))
        };
        if b[3] != b':' || b[6] != b':' {
            return None;
        }
        let seconds = sign * (two(1)? * 3600 + two(4)? * 60 + two(7)?);
        // The local wall-clock time, read as if it were UTC, then moved by the offset.
        let wall = DateTime::parse_from_rfc3339(&format!("{local}Z")).ok()?;
        wall.with_timezone(&Utc)
            .checked_sub_signed(chrono::TimeDelta::seconds(seconds))
    };
    with_seconds().ok_or(rfc3339)
}

/// Decodes one binary `COPY` row (columns in catalog order) into column values.
pub fn row_from_copy(table: &Table, row: &BinaryCopyOutRow) -> Result<Vec<Value>, SyncError> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            value_from_copy(column.kind, row, i)
                .map_err(|e| decode_error(table, column.name, &e.to_string()))
        })
        .collect()
}

fn value_from_copy(
    kind: ColumnKind,
    row: &BinaryCopyOutRow,
    i: usize,
) -> Result<Value, tokio_postgres::Error> {
    let value = match kind {
        ColumnKind::Uuid => row.try_get::<Option<uuid::Uuid>>(i)?.map(|u| {
            let mut buf = uuid::Uuid::encode_buffer();
            Value::Text(u.hyphenated().encode_lower(&mut buf).to_owned())
        }),
        ColumnKind::Text => row
            .try_get::<Option<&str>>(i)?
            .map(|s| Value::Text(s.to_owned())),
        ColumnKind::Int4 => row
            .try_get::<Option<i32>>(i)?
            .map(|n| Value::Integer(n.into())),
        ColumnKind::Int8 => row.try_get::<Option<i64>>(i)?.map(Value::Integer),
        ColumnKind::Timestamptz => row
            .try_get::<Option<DateTime<Utc>>>(i)?
            .map(|t| Value::Text(format_timestamp(t))),
    };
    Ok(value.unwrap_or(Value::Null))
}

/// The Postgres type `COPY … (format binary)` sends for a column kind.
pub fn pg_type(kind: ColumnKind) -> tokio_postgres::types::Type {
    use tokio_postgres::types::Type;
    match kind {
        ColumnKind::Uuid => Type::UUID,
        ColumnKind::Text => Type::TEXT,
        ColumnKind::Int4 => Type::INT4,
        ColumnKind::Int8 => Type::INT8,
        ColumnKind::Timestamptz => Type::TIMESTAMPTZ,
    }
}

fn decode_error(table: &Table, column: &str, why: &str) -> SyncError {
    SyncError::fatal(format!(
        "cannot decode {}.{column} from the primary: {why}",
        table.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PRODUCTS;

    #[test]
    fn timestamps_in_any_offset_become_fixed_width_utc() {
        let v = value_from_json(
            ColumnKind::Timestamptz,
            &serde_json::json!("2026-11-24T21:50:46.1+02:00"),
        )
        .unwrap();
        assert_eq!(v, Value::Text("2026-11-24T19:50:46.100000Z".into()));
    }

    #[test]
    fn offsets_with_seconds_are_understood() {
        let v = value_from_json(
            ColumnKind::Timestamptz,
            &serde_json::json!("1800-01-01T00:09:21+00:09:21"),
        )
        .unwrap();
        assert_eq!(v, Value::Text("1800-01-01T00:00:00.000000Z".into()));
        let v = value_from_json(
            ColumnKind::Timestamptz,
            &serde_json::json!("0682-03-05T04:30:01.255742+05:53:28"),
        )
        .unwrap();
        assert_eq!(v, Value::Text("0682-03-04T22:36:33.255742Z".into()));
    }

    #[test]
    fn the_fast_timestamp_format_matches_chrono() {
        for text in [
            "2026-11-24T19:50:46.123456Z",
            "1999-01-02T03:04:05Z",
            "2024-02-29T23:59:59.999999Z",
            "0001-01-01T00:00:00.000001Z",
        ] {
            let ts = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            assert_eq!(
                format_timestamp(ts),
                ts.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
        }
    }

    #[test]
    fn a_row_image_missing_a_column_is_a_fatal_decode_error() {
        let err = row_from_json(&PRODUCTS, r#"{"id":"x"}"#).unwrap_err();
        assert!(err.is_fatal(), "{err}");
        assert!(err.to_string().contains("products.owner_id"), "{err}");
    }

    #[test]
    fn a_number_where_text_belongs_is_refused() {
        assert!(value_from_json(ColumnKind::Text, &serde_json::json!(3)).is_err());
        assert!(value_from_json(ColumnKind::Int4, &serde_json::json!(1.5)).is_err());
    }
}
