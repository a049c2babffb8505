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
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Decodes a JSON row image into the table's column values, in catalog order.
pub fn row_from_json(table: &Table, json: &str) -> Result<Vec<Value>, SyncError> {
    let image: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| decode_error(table, "row image", &e.to_string()))?;
    // A column added on the primary that this binary does not know: applying the rest
    // would silently drop it. Stop instead (the operator deploys the matching binary).
    // (A missing column is reported below, naming it.)
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
        (ColumnKind::Timestamptz, J::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Value::Text(format_timestamp(t.with_timezone(&Utc))))
            .map_err(|e| format!("bad timestamp {s:?}: {e}")),
        (kind, other) => Err(format!("expected {kind:?}, got {other}")),
    }
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
        ColumnKind::Uuid => row
            .try_get::<Option<uuid::Uuid>>(i)?
            .map(|u| Value::Text(u.hyphenated().to_string())),
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
