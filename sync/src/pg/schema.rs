//! Checking the primary's replicated tables against this binary's [`crate::catalog`].
//!
//! Migrations are expand/contract (docs/DEPLOY.md): an *additive* change on the primary (a
//! new column, a new replicated table) must not stop an edge of an older binary, which goes
//! on applying the columns and tables it knows and reports the rest as "the primary's schema
//! is newer". A *destructive* change to what this binary reads (a column dropped, renamed or
//! retyped, a table gone) means the replica cannot represent what the primary sends: that is
//! a fatal error an operator must act on, reported in one precise sentence.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::catalog::TABLES;
use crate::error::SyncError;

/// Returns a fatal error describing every destructive difference; otherwise what the
/// primary has that this binary does not replicate (`table.column` or `table`), sorted.
pub async fn check_primary_schema(client: &Client) -> Result<Vec<String>, SyncError> {
    let (mut problems, mut newer) = (Vec::new(), Vec::new());
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
        newer.extend(
            primary
                .keys()
                .map(|extra| format!("{}.{extra}", table.name)),
        );
    }
    // Replicated tables (the change-stream trigger is on them) this binary does not know.
    let replicated = client
        .query(
            "select distinct c.relname::text from pg_trigger t
               join pg_class c on c.oid = t.tgrelid
              where t.tgname = 'sync_record_change'
                and c.relnamespace = current_schema()::regnamespace",
            &[],
        )
        .await?;
    newer.extend(
        replicated
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|t| TABLES.iter().all(|known| known.name != t)),
    );
    if problems.is_empty() {
        newer.sort();
        Ok(newer)
    } else {
        problems.sort();
        Err(SyncError::fatal(format!(
            "replica schema does not match the primary: {}",
            problems.join("; ")
        )))
    }
}
