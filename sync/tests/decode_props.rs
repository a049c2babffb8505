//! Property tests (fuzzing) of change-row decoding: `decode::row_from_json` on arbitrary
//! input never panics and either decodes or returns a fatal error naming the table and
//! column; valid row images round-trip to the replica's canonical values.
//!
//! Cases per property: 256 by default (fast: no I/O); `PROPTEST_CASES=100000` for a longer
//! run. See also `decode_pg_props.rs` (the same rows through a real Postgres, JSON and COPY).

use auto_order_sync::catalog::{ColumnKind, TABLES, Table};
use auto_order_sync::decode::{format_timestamp, row_from_json};
use auto_order_sync::rusqlite::types::Value;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};

fn config() -> ProptestConfig {
    // `PROPTEST_CASES` (read by `ProptestConfig::default`) overrides the CI default.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, nested a few levels, with odd strings and numbers at the edges.
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from), // NaN/inf become null
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(1e300)),
        Just(json!(-0.0)),
        ".*".prop_map(Json::from),
        odd_string().prop_map(Json::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::from),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that look almost like the values decoded: timestamps, uuids, numbers, controls.
fn odd_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_owned()),
        Just("2026-11-24T19:50:46.1+02:00 BC".to_owned()),
        Just("10000-01-01T00:00:00+00:00".to_owned()),
        Just("2026-02-30T00:00:00Z".to_owned()),
        Just("2026-11-24T19:50:46+00:09:21".to_owned()),
        Just("2026-11-24 19:50:46+00".to_owned()),
        Just("infinity".to_owned()),
        Just("9999999999999999999999".to_owned()),
        Just("\u{feff}\u{202e}x\u{fffd}".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
        "[0-9a-fA-F-]{0,40}",
    ]
}

/// A timestamp Postgres can hold and print without " BC" or a five-digit year.
fn any_timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    let min = Utc
        .with_ymd_and_hms(1, 1, 2, 0, 0, 0)
        .unwrap()
        .timestamp_micros();
    let max = Utc
        .with_ymd_and_hms(9999, 12, 30, 23, 59, 59)
        .unwrap()
        .timestamp_micros();
    prop_oneof![
        min..=max,
        // Around now, where real rows are.
        1_600_000_000_000_000i64..1_900_000_000_000_000,
    ]
    .prop_map(|us| DateTime::from_timestamp_micros(us).unwrap())
}

/// A value of `kind` as the replica must store it, and as a JSON row image carries it.
fn column_value(kind: ColumnKind) -> BoxedStrategy<(Value, Json)> {
    let nullable = |s: BoxedStrategy<(Value, Json)>| {
        prop_oneof![1 => Just((Value::Null, Json::Null)), 6 => s].boxed()
    };
    match kind {
        ColumnKind::Uuid => nullable(
            any::<u128>()
                .prop_map(|n| {
                    let text = uuid::Uuid::from_u128(n).hyphenated().to_string();
                    (Value::Text(text.clone()), Json::from(text))
                })
                .boxed(),
        ),
        ColumnKind::Text => nullable(
            prop_oneof![".*", odd_string(), "\\PC{0,300}"]
                .prop_map(|s| (Value::Text(s.clone()), Json::from(s)))
                .boxed(),
        ),
        ColumnKind::Int4 => nullable(
            any::<i32>()
                .prop_map(|n| (Value::Integer(n.into()), Json::from(n)))
                .boxed(),
        ),
        ColumnKind::Int8 => nullable(
            any::<i64>()
                .prop_map(|n| (Value::Integer(n), Json::from(n)))
                .boxed(),
        ),
        ColumnKind::Timestamptz => nullable(
            (
                any_timestamp(),
                -(15 * 60 + 59)..=(15 * 60 + 59i32),
                0..3usize,
            )
                .prop_map(|(t, offset_minutes, style)| {
                    let text = postgres_style(t, offset_minutes, style);
                    (Value::Text(format_timestamp(t)), Json::from(text))
                })
                .boxed(),
        ),
    }
}

/// `t` printed the way Postgres prints a timestamptz in JSON, at a UTC offset of
/// `offset_minutes`: the fraction without trailing zeros (none at all for whole seconds);
/// `style` 1 writes UTC as `Z`, style 2 adds seconds to the offset (`+05:53:28`, the form
/// Postgres uses for historical local mean time zones).
fn postgres_style(t: DateTime<Utc>, offset_minutes: i32, style: usize) -> String {
    let offset_seconds = offset_minutes * 60 + if style == 2 { offset_minutes % 60 } else { 0 };
    let zone = chrono::FixedOffset::east_opt(offset_seconds).unwrap();
    let local = t.with_timezone(&zone);
    let mut text = local.format("%Y-%m-%dT%H:%M:%S").to_string();
    let micros = t.timestamp_subsec_micros();
    if micros > 0 {
        text.push_str(format!(".{micros:06}").trim_end_matches('0'));
    }
    let sign = if offset_seconds < 0 { '-' } else { '+' };
    let abs = offset_seconds.unsigned_abs();
    match (style, abs % 60) {
        (1, _) if abs == 0 => text.push('Z'),
        (_, 0) => text.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)),
        (_, s) => text.push_str(&format!(
            "{sign}{:02}:{:02}:{s:02}",
            abs / 3600,
            abs / 60 % 60
        )),
    }
    text
}

/// A table and a valid row of it: the expected replica values and the JSON row image.
fn valid_row() -> impl Strategy<Value = (&'static Table, Vec<Value>, Map<String, Json>)> {
    prop::sample::select(TABLES.to_vec()).prop_flat_map(|table| {
        let columns: Vec<_> = table.columns.iter().map(|c| column_value(c.kind)).collect();
        columns.prop_map(move |values| {
            let expected = values.iter().map(|(v, _)| v.clone()).collect();
            let image = table
                .columns
                .iter()
                .zip(values)
                .map(|(c, (_, j))| (c.name.to_owned(), j))
                .collect();
            (table, expected, image)
        })
    })
}

/// A JSON value that is not acceptable for a column of `kind` (null always is).
fn wrong_value(kind: ColumnKind) -> BoxedStrategy<Json> {
    let containers = prop_oneof![Just(json!([])), Just(json!({})), Just(json!([1, "a"]))];
    match kind {
        ColumnKind::Uuid | ColumnKind::Text => prop_oneof![
            any::<i64>().prop_map(Json::from),
            any::<bool>().prop_map(Json::from),
            Just(json!(1.5)),
            containers,
        ]
        .boxed(),
        ColumnKind::Int4 | ColumnKind::Int8 => prop_oneof![
            ".*".prop_map(Json::from),
            any::<bool>().prop_map(Json::from),
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Json::from),
            Just(json!(1e300)),
            Just(json!(0.5)),
            Just(json!(-2.0e10)),
            containers,
        ]
        .boxed(),
        ColumnKind::Timestamptz => prop_oneof![
            any::<i64>().prop_map(Json::from),
            any::<bool>().prop_map(Json::from),
            "[^0-9]{0,20}".prop_map(Json::from),
            Just(json!("2026-02-30T00:00:00Z")),
            Just(json!("2026-11-24T19:50:46+00:00 BC")),
            Just(json!("10000-01-01T00:00:00+00:00")),
            Just(json!("2026-11-24")),
            Just(json!("infinity")),
            containers,
        ]
        .boxed(),
    }
}

/// A row image broken in one way, and what the error must name.
#[derive(Debug, Clone)]
enum Breakage {
    Missing(usize),
    Unknown(String),
    WrongType(usize, Json),
}

fn broken_row() -> impl Strategy<Value = (&'static Table, Map<String, Json>, Breakage)> {
    valid_row().prop_flat_map(|(table, _, image)| {
        let n = table.columns.len();
        let breakage = prop_oneof![
            (0..n).prop_map(Breakage::Missing),
            "[a-z_]{1,12}|.{0,12}"
                .prop_filter("not a column", move |k| !table
                    .columns
                    .iter()
                    .any(|c| c.name == k))
                .prop_map(Breakage::Unknown),
            (0..n).prop_flat_map(move |i| {
                wrong_value(table.columns[i].kind).prop_map(move |v| Breakage::WrongType(i, v))
            }),
        ];
        (Just(table), Just(image), breakage).prop_map(|(table, mut image, breakage)| {
            match &breakage {
                Breakage::Missing(i) => {
                    image.remove(table.columns[*i].name);
                }
                Breakage::Unknown(k) => {
                    image.insert(k.clone(), json!(1));
                }
                Breakage::WrongType(i, v) => {
                    image.insert(table.columns[*i].name.to_owned(), v.clone());
                }
            }
            (table, image, breakage)
        })
    })
}

proptest! {
    #![proptest_config(config())]

    /// Any text at all as a row image: no panic; either a full row or a fatal error.
    #[test]
    fn any_text_decodes_or_fails_cleanly(
        table in prop::sample::select(TABLES.to_vec()),
        text in prop_oneof![".*", "\\PC*", "[{}\\[\\]\":,0-9a-z_ .eE+-]{0,64}"],
    ) {
        match row_from_json(table, &text) {
            Ok(row) => prop_assert_eq!(row.len(), table.columns.len()),
            Err(e) => prop_assert!(e.is_fatal(), "{}", e),
        }
    }

    /// Any JSON value (objects with catalog column names included): no panic; either a
    /// full row or a fatal error naming the table.
    #[test]
    fn any_json_decodes_or_fails_cleanly(
        table in prop::sample::select(TABLES.to_vec()),
        value in any_json(),
        // Sometimes mix arbitrary values into a set of the table's own column names.
        columns in prop::collection::vec((0..10usize, any_json()), 0..12),
    ) {
        let mut value = value;
        if let Json::Object(map) = &mut value {
            for (i, v) in columns {
                let name = table.columns[i % table.columns.len()].name;
                map.insert(name.to_owned(), v);
            }
        }
        match row_from_json(table, &value.to_string()) {
            Ok(row) => prop_assert_eq!(row.len(), table.columns.len()),
            Err(e) => {
                prop_assert!(e.is_fatal(), "{}", e);
                prop_assert!(e.to_string().contains(table.name), "{}", e);
            }
        }
    }

    /// A valid row image decodes to exactly the generated values: text and integers as
    /// they are, timestamps in any offset as fixed-width UTC with microseconds.
    #[test]
    fn valid_rows_round_trip((table, expected, image) in valid_row()) {
        let decoded = row_from_json(table, &Json::Object(image).to_string())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded, expected);
    }

    /// A row image with one column missing or one value of the wrong type is refused with a
    /// fatal error that names the column; one with an unknown column (added on a newer
    /// primary) decodes, the column ignored.
    #[test]
    fn broken_rows_are_refused_naming_the_column((table, image, breakage) in broken_row()) {
        let decoded = row_from_json(table, &Json::Object(image.clone()).to_string());
        let err = match (decoded, &breakage) {
            (Ok(row), Breakage::Unknown(_)) => {
                prop_assert_eq!(row.len(), table.columns.len());
                return Ok(());
            }
            (Ok(row), _) => return Err(TestCaseError::fail(format!("decoded {row:?} from {image:?}"))),
            (Err(e), _) => e,
        };
        prop_assert!(err.is_fatal(), "{}", err);
        let text = err.to_string();
        match breakage {
            Breakage::Missing(i) | Breakage::WrongType(i, _) => {
                let column = format!("{}.{}", table.name, table.columns[i].name);
                prop_assert!(text.contains(&column), "{} does not name {}", text, column);
            }
            Breakage::Unknown(k) => return Err(TestCaseError::fail(format!("unknown column {k:?} refused: {text}"))),
        }
    }

    /// The canonical timestamp is fixed-width, equal to chrono's own formatting, and sorts
    /// as text the way the times sort.
    #[test]
    fn canonical_timestamps_are_fixed_width_and_ordered(a in any_timestamp(), b in any_timestamp()) {
        let (ta, tb) = (format_timestamp(a), format_timestamp(b));
        prop_assert_eq!(ta.len(), 27);
        prop_assert_eq!(&ta, &a.to_rfc3339_opts(SecondsFormat::Micros, true));
        prop_assert_eq!(ta.cmp(&tb), a.cmp(&b));
    }

    /// Any representable time formats without panicking, even outside years 0..=9999.
    #[test]
    fn any_time_formats_without_panicking(us in any::<i64>()) {
        if let Some(t) = DateTime::from_timestamp_micros(us) {
            let text = format_timestamp(t);
            prop_assert!(DateTime::parse_from_rfc3339(&text).is_ok() || !(0..=9999).contains(&chrono::Datelike::year(&t)), "{}", text);
        }
    }
}
