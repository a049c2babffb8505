//! Checking the primary's replicated tables against this binary's [`crate::catalog`].
//!
//! A mismatch (a column added on the primary by a newer migration, a type changed) means the
//! replica cannot represent what the primary sends: that is the one fatal error an operator
//! must act on (deploy the matching binary), so it is reported in one precise sentence.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::catalog::TABLES;
use crate::error::SyncError;

/// Returns a fatal error describing every difference, or `Ok` when they agree.
pub async fn check_primary_schema(client: &Client) -> Result<(), SyncError> {
    let mut problems = Vec::new();
    for table in TABLES.iter().copied() {
        let rows = client
            .query(
                "select column_name::text, data_type::text from information_schema.columns
                  where table_schema = current_schema() and table_name = $1",
                &[&table.name],
            )
            .await?;
        if rows.is_empty() {
            problems.push(format!(
                "table {} is missing (run `auto-order migrate`)",
                table.name
            ));
            continue;
        }
        let mut primary: HashMap<String, String> =
            rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        for column in table.columns {
            match primary.remove(column.name) {
                None => problems.push(format!("{}.{} is missing", table.name, column.name)),
                Some(t) if !column.kind.accepts_pg_type(&t) => problems.push(format!(
                    "{}.{} is {t}, the replica expects {:?}",
                    table.name, column.name, column.kind
                )),
                Some(_) => {}
            }
        }
        for extra in primary.keys() {
            problems.push(format!(
                "{}.{extra} exists on the primary but not in this binary's replica schema",
                table.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.sort();
        Err(SyncError::fatal(format!(
            "replica schema does not match the primary: {}",
            problems.join("; ")
        )))
    }
}
