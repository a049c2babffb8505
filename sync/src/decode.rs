//! Turning Postgres values into the replica's SQLite values.
//!
//! Two paths reach the replica: change rows carry a JSON row image (`to_jsonb(new)`, written
//! by the trigger with timezone UTC) and the snapshot carries binary `COPY` rows. Both end in
//! the same canonical form, so a row looks identical whichever way it arrived.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Value;

use crate::catalog::{ColumnKind, Table};
use crate::error::SyncError;
use crate::rows::RowBlock;

/// The canonical replica form of a timestamp: fixed-width UTC with microseconds, so that
/// text order is time order.
pub fn format_timestamp(ts: DateTime<Utc>) -> String {
    let mut text = String::with_capacity(27);
    write_timestamp(ts, &mut text);
    text
}

/// [`format_timestamp`], appended to `text`.
pub fn write_timestamp(ts: DateTime<Utc>, text: &mut String) {
    // Hand-rolled: chrono's formatter showed up in resync profiles (three per row).
    use chrono::{Datelike, Timelike};
    let year = ts.year();
    if !(0..=9999).contains(&year) {
        text.push_str(&ts.to_rfc3339_opts(SecondsFormat::Micros, true));
        return;
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
    text.push_str(std::str::from_utf8(&out).expect("ascii"));
}

/// Decodes a JSON row image into the table's column values, in catalog order.
pub fn row_from_json(table: &Table, json: &str) -> Result<Vec<Value>, SyncError> {
    let image: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(json).map_err(|e| decode_error(table, "row image", &e.to_string()))?;
    // Keys this binary does not know (a column added on a newer primary, reported by the
    // schema check) are ignored: the replica keeps the columns it has.
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

/// The signature a binary `COPY` file starts with.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds from the Unix epoch to Postgres's (2000-01-01 UTC).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Decodes one table's binary `COPY … TO STDOUT (format binary)`, columns in catalog order,
/// one CopyData message at a time: Postgres sends one per row, the first also carrying the
/// file header and the last being the trailer. Written for this one layout rather than
/// through `tokio_postgres::binary_copy`, whose per-row vector of ranges, type checks and
/// owned values were most of a resync's decoding time.
#[derive(Debug)]
pub struct CopyRows {
    table: &'static Table,
    header_read: bool,
    ended: bool,
}

impl CopyRows {
    pub fn new(table: &'static Table) -> CopyRows {
        CopyRows {
            table,
            header_read: false,
            ended: false,
        }
    }

    /// Whether the trailer was read: a stream that stops before it was cut.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Appends the row in `message` to `rows`; `Ok(false)` if `message` is the trailer.
    pub fn decode(&mut self, mut message: &[u8], rows: &mut RowBlock) -> Result<bool, SyncError> {
        let table = self.table;
        let malformed = |why: &str| decode_error(table, "(copy row)", why);
        if self.ended {
            return Err(malformed("a message after the trailer"));
        }
        if !self.header_read {
            let signature = take(&mut message, COPY_SIGNATURE.len()).map_err(malformed)?;
            if signature != COPY_SIGNATURE {
                return Err(malformed("not a binary COPY stream"));
            }
            let flags = take_i32(&mut message).map_err(malformed)?;
            if flags & (1 << 16) != 0 {
                return Err(malformed("rows carry oids"));
            }
            let extension = take_i32(&mut message).map_err(malformed)?;
            let extension = usize::try_from(extension).map_err(|_| malformed("bad header"))?;
            take(&mut message, extension).map_err(malformed)?;
            self.header_read = true;
        }
        let count = take(&mut message, 2).map_err(malformed)?;
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(false);
        }
        if usize::try_from(count).ok() != Some(table.columns.len()) {
            return Err(malformed(&format!(
                "{count} columns, expected {}",
                table.columns.len()
            )));
        }
        for column in table.columns {
            let length = take_i32(&mut message).map_err(malformed)?;
            let Ok(length) = usize::try_from(length) else {
                rows.push_null();
                continue;
            };
            let bytes = take(&mut message, length).map_err(malformed)?;
            push_copy_value(column.kind, bytes, rows)
                .map_err(|why| decode_error(table, column.name, &why))?;
        }
        if !message.is_empty() {
            return Err(malformed("bytes after the last column"));
        }
        Ok(true)
    }
}

/// Appends one non-null binary `COPY` value in the replica's canonical form.
fn push_copy_value(kind: ColumnKind, bytes: &[u8], rows: &mut RowBlock) -> Result<(), String> {
    let wrong_size = || format!("{} bytes for a {kind:?}", bytes.len());
    match kind {
        ColumnKind::Uuid => {
            let uuid = uuid::Uuid::from_slice(bytes).map_err(|_| wrong_size())?;
            let mut buf = uuid::Uuid::encode_buffer();
            rows.push_text(uuid.hyphenated().encode_lower(&mut buf));
        }
        ColumnKind::Text => {
            let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
            rows.push_text(text);
        }
        ColumnKind::Int4 => {
            let n = i32::from_be_bytes(bytes.try_into().map_err(|_| wrong_size())?);
            rows.push_integer(n.into());
        }
        ColumnKind::Int8 => {
            rows.push_integer(i64::from_be_bytes(
                bytes.try_into().map_err(|_| wrong_size())?,
            ));
        }
        ColumnKind::Timestamptz => {
            let micros = i64::from_be_bytes(bytes.try_into().map_err(|_| wrong_size())?);
            let ts = micros
                .checked_add(PG_EPOCH_MICROS)
                .and_then(DateTime::from_timestamp_micros)
                .ok_or_else(|| format!("timestamp out of range ({micros} µs after 2000)"))?;
            rows.push_text_with(|text| write_timestamp(ts, text));
        }
    }
    Ok(())
}

/// Splits `n` bytes off the front of `input`.
fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], &'static str> {
    let (head, rest) = input.split_at_checked(n).ok_or("truncated")?;
    *input = rest;
    Ok(head)
}

fn take_i32(input: &mut &[u8]) -> Result<i32, &'static str> {
    let bytes = take(input, 4)?;
    Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
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

    /// One CopyData message of `PRODUCTS` holding `fields`, after the file header if
    /// `header`.
    fn copy_message(header: bool, fields: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        if header {
            out.extend_from_slice(COPY_SIGNATURE);
            out.extend_from_slice(&0i32.to_be_bytes());
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(b"ext!");
        }
        out.extend_from_slice(&(fields.len() as i16).to_be_bytes());
        for field in fields {
            match field {
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(bytes) => {
                    out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    /// A valid `PRODUCTS` row: every kind once, two nulls.
    fn product_fields(name: &[u8]) -> Vec<Option<Vec<u8>>> {
        let uuid = (0u8..16).collect::<Vec<_>>();
        let second = 1_000_000i64.to_be_bytes().to_vec();
        vec![
            Some(uuid),
            Some(b"auth0|a".to_vec()),
            Some(name.to_vec()),
            None,
            Some(3i32.to_be_bytes().to_vec()),
            Some((-7i32).to_be_bytes().to_vec()),
            None,
            Some(0i64.to_be_bytes().to_vec()),
            Some(second),
            Some(42i64.to_be_bytes().to_vec()),
        ]
    }

    fn as_slices(fields: &[Option<Vec<u8>>]) -> Vec<Option<&[u8]>> {
        fields.iter().map(|f| f.as_deref()).collect()
    }

    #[test]
    fn copy_rows_decode_to_the_canonical_form() {
        let mut decoder = CopyRows::new(&PRODUCTS);
        let mut rows = RowBlock::new(PRODUCTS.columns.len(), 2);
        let fields = product_fields("tea".as_bytes());
        assert!(
            decoder
                .decode(&copy_message(true, &as_slices(&fields)), &mut rows)
                .unwrap()
        );
        assert!(
            decoder
                .decode(&copy_message(false, &as_slices(&fields)), &mut rows)
                .unwrap()
        );
        assert!(!decoder.ended());
        assert!(!decoder.decode(&(-1i16).to_be_bytes(), &mut rows).unwrap());
        assert!(decoder.ended());
        assert_eq!(rows.len(), 2);
        let text = |s: &str| Value::Text(s.to_owned());
        assert_eq!(
            rows.values(1),
            vec![
                text("00010203-0405-0607-0809-0a0b0c0d0e0f"),
                text("auth0|a"),
                text("tea"),
                Value::Null,
                Value::Integer(3),
                Value::Integer(-7),
                Value::Null,
                text("2000-01-01T00:00:00.000000Z"),
                text("2000-01-01T00:00:01.000000Z"),
                Value::Integer(42),
            ]
        );
    }

    #[test]
    fn malformed_copy_rows_are_fatal_errors_naming_the_table() {
        let valid = product_fields(b"tea");
        let header_and_row = copy_message(true, &as_slices(&valid));
        let mut short_uuid = valid.clone();
        short_uuid[0] = Some(vec![0; 15]);
        let mut not_utf8 = valid.clone();
        not_utf8[2] = Some(vec![0xff, 0xfe]);
        let mut long_int = valid.clone();
        long_int[4] = Some(vec![0; 8]);
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "truncated",
                header_and_row[..header_and_row.len() - 1].to_vec(),
                "products",
            ),
            (
                "bytes after the row",
                [header_and_row.as_slice(), &[0]].concat(),
                "products",
            ),
            (
                "a column short",
                copy_message(true, &as_slices(&valid[..9])),
                "products",
            ),
            (
                "no header",
                copy_message(false, &as_slices(&valid)),
                "products",
            ),
            (
                "a uuid of 15 bytes",
                copy_message(true, &as_slices(&short_uuid)),
                "products.id",
            ),
            (
                "text that is not UTF-8",
                copy_message(true, &as_slices(&not_utf8)),
                "products.name",
            ),
            (
                "an int4 of 8 bytes",
                copy_message(true, &as_slices(&long_int)),
                "products.reorder_quantity",
            ),
        ];
        for (what, message, names) in cases {
            let mut rows = RowBlock::new(PRODUCTS.columns.len(), 1);
            let err = CopyRows::new(&PRODUCTS)
                .decode(&message, &mut rows)
                .expect_err(what);
            assert!(err.is_fatal(), "{what}: {err}");
            assert!(err.to_string().contains(names), "{what}: {err}");
        }

        let mut decoder = CopyRows::new(&PRODUCTS);
        let mut rows = RowBlock::new(PRODUCTS.columns.len(), 1);
        decoder.decode(&header_and_row, &mut rows).unwrap();
        decoder.decode(&(-1i16).to_be_bytes(), &mut rows).unwrap();
        let err = decoder
            .decode(&copy_message(false, &as_slices(&valid)), &mut rows)
            .expect_err("a row after the trailer");
        assert!(err.is_fatal(), "{err}");
    }

    #[test]
    fn a_number_where_text_belongs_is_refused() {
        assert!(value_from_json(ColumnKind::Text, &serde_json::json!(3)).is_err());
        assert!(value_from_json(ColumnKind::Int4, &serde_json::json!(1.5)).is_err());
    }
}
