//! Property test of both decoding paths against a real Postgres (`TEST_DATABASE_URL`,
//! default `postgres://postgres@127.0.0.1:5432/postgres`; nothing is created or written):
//! generated rows are rendered by Postgres itself as a JSON row image (`to_jsonb`, in a
//! random session time zone) and as binary `COPY` values, and both must decode to exactly
//! the generated values, so a row looks the same in the replica whichever way it arrived.
//!
//! 64 cases of up to 8 rows by default; `PROPTEST_CASES=5000` for a longer run.

use auto_order_sync::PgConnector;
use auto_order_sync::catalog::{ColumnKind, TABLES, Table};
use auto_order_sync::decode::{CopyRows, format_timestamp, row_from_json};
use auto_order_sync::rows::RowBlock;
use auto_order_sync::rusqlite::types::Value;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::{StreamExt, pin_mut};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Time zones whose printed offsets are awkward: half and three-quarter hours, and local
/// mean time (an offset with seconds, e.g. `+00:09:21`) for old dates.
const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/New_York",
];

/// One generated column value: what the replica must hold, and how to write it in SQL.
#[derive(Debug, Clone)]
struct Cell {
    expected: Value,
    literal: String,
}

fn cell(kind: ColumnKind) -> BoxedStrategy<Cell> {
    let type_name = match kind {
        ColumnKind::Uuid => "uuid",
        ColumnKind::Text => "text",
        ColumnKind::Int4 => "int4",
        ColumnKind::Int8 => "int8",
        ColumnKind::Timestamptz => "timestamptz",
    };
    let value: BoxedStrategy<Cell> = match kind {
        // Written in either case: both paths must give lowercase.
        ColumnKind::Uuid => (any::<u128>(), any::<bool>())
            .prop_map(|(n, upper)| {
                let text = uuid::Uuid::from_u128(n).hyphenated().to_string();
                let written = if upper {
                    text.to_uppercase()
                } else {
                    text.clone()
                };
                Cell {
                    expected: Value::Text(text),
                    literal: format!("'{written}'::uuid"),
                }
            })
            .boxed(),
        // Any text Postgres can hold (no NUL).
        ColumnKind::Text => prop_oneof!["[^\u{0}]*", "[ -~]{0,20}", Just("'\\\"".to_owned())]
            .prop_map(|s| Cell {
                literal: format!("'{}'::text", s.replace('\'', "''")),
                expected: Value::Text(s),
            })
            .boxed(),
        ColumnKind::Int4 => any::<i32>()
            .prop_map(|n| Cell {
                expected: Value::Integer(n.into()),
                literal: format!("({n})::int4"),
            })
            .boxed(),
        ColumnKind::Int8 => any::<i64>()
            .prop_map(|n| Cell {
                expected: Value::Integer(n),
                literal: format!("({n})::int8"),
            })
            .boxed(),
        ColumnKind::Timestamptz => {
            let min = Utc.with_ymd_and_hms(1, 1, 2, 0, 0, 0).unwrap();
            let max = Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0).unwrap();
            prop_oneof![
                min.timestamp_micros()..max.timestamp_micros(),
                1_600_000_000_000_000i64..1_900_000_000_000_000,
            ]
            .prop_map(|us| {
                let t = DateTime::from_timestamp_micros(us).unwrap();
                let text = format_timestamp(t);
                Cell {
                    literal: format!("'{text}'::timestamptz"),
                    expected: Value::Text(text),
                }
            })
            .boxed()
        }
    };
    prop_oneof![
        1 => Just(Cell { expected: Value::Null, literal: format!("null::{type_name}") }),
        6 => value,
    ]
    .boxed()
}

fn rows_of(table: &'static Table) -> impl Strategy<Value = Vec<Vec<Cell>>> {
    let row: Vec<_> = table.columns.iter().map(|c| cell(c.kind)).collect();
    prop::collection::vec(row, 1..8)
}

#[test]
fn json_images_and_copy_rows_decode_to_the_generated_values() {
    let url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        PgConnector::from_url(&url)
            .unwrap()
            .connect(None)
            .await
            .expect("connect to the test Postgres")
    });
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(TABLES.to_vec()),
        prop::sample::select(ZONES.to_vec()),
    )
        .prop_flat_map(|(table, zone)| (Just(table), Just(zone), rows_of(table)));
    let result = runner.run(&strategy, |(table, zone, rows)| {
        runtime.block_on(check(&client, table, zone, &rows))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn check(
    client: &tokio_postgres::Client,
    table: &'static Table,
    zone: &str,
    rows: &[Vec<Cell>],
) -> Result<(), TestCaseError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| TestCaseError::fail(format!("{what}: {e}"));
    let names: Vec<&str> = table.column_names().collect();
    let values: Vec<String> = rows
        .iter()
        .map(|row| {
            let literals: Vec<&str> = row.iter().map(|c| c.literal.as_str()).collect();
            format!("({})", literals.join(", "))
        })
        .collect();
    let relation = format!("(values {}) as r({})", values.join(", "), names.join(", "));
    let expected: Vec<Vec<Value>> = rows
        .iter()
        .map(|row| row.iter().map(|c| c.expected.clone()).collect())
        .collect();

    // The JSON path: the row image as Postgres prints it in this session's time zone.
    client
        .batch_execute(&format!("set timezone to '{zone}'"))
        .await
        .map_err(|e| fail("set timezone", &e))?;
    let images = client
        .query(&format!("select to_jsonb(r)::text from {relation}"), &[])
        .await
        .map_err(|e| fail("select to_jsonb", &e))?;
    let mut from_json = Vec::new();
    for image in &images {
        let text: &str = image.get(0);
        from_json.push(row_from_json(table, text).map_err(|e| fail(text, &e))?);
    }
    prop_assert_eq!(&from_json, &expected, "JSON path, time zone {}", zone);

    // The COPY path, as the snapshot reads it.
    let stream = client
        .copy_out(&format!(
            "copy (select * from {relation}) to stdout (format binary)"
        ))
        .await
        .map_err(|e| fail("copy out", &e))?;
    pin_mut!(stream);
    let mut decoder = CopyRows::new(table);
    let mut block = RowBlock::new(table.columns.len(), rows.len());
    while let Some(message) = stream.next().await {
        let message = message.map_err(|e| fail("copy message", &e))?;
        decoder
            .decode(&message, &mut block)
            .map_err(|e| fail("decode copy row", &e))?;
    }
    prop_assert!(decoder.ended(), "the copy ended without its trailer");
    let from_copy: Vec<Vec<Value>> = (0..block.len()).map(|row| block.values(row)).collect();
    prop_assert_eq!(&from_copy, &expected, "COPY path");
    Ok(())
}
