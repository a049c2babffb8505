//! One [`Select`] over a replicated table, answered by the SQLite replica (on a blocking
//! thread, in a span beneath the request's) or, when a client's sync token is not applied
//! yet, by the primary. Both return rows as the replica stores them (catalog
//! column order, canonical values), so handlers have one mapping to their views.
//!
//! # Layout
//! - [`Select`] / [`Filter`]: the query, rendered to SQLite (`?n`) or Postgres (`$n`, typed
//!   casts, `to_jsonb(row)` decoded by [`auto_order_sync::decode::row_from_json`]).
//! - [`Store::fetch`]: runs it where [`crate::consistency::ReadFrom`] says.

use auto_order_sync::catalog::{ColumnKind, Table};
use auto_order_sync::rusqlite;
use tokio_postgres::types::ToSql;

use super::{Row, Store, StoreError};

/// A condition on one column; every value is passed as text (timestamps in canonical form).
#[derive(Debug, Clone)]
pub enum Filter {
    Eq(&'static str, String),
    /// `column >= value`
    AtLeast(&'static str, String),
    /// `column < value`
    Before(&'static str, String),
    /// Substring, case-insensitive for ASCII letters only (the value is folded by the
    /// caller with [`fold_case`]).
    Contains(&'static str, String),
}

const ASCII_UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ASCII_LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

/// The case folding of [`Filter::Contains`]: ASCII letters only, as SQLite's `lower()`
/// does, on the replica and (by `translate`) on the primary alike. Folding every letter in
/// Rust, as before, made a search for `éclair` miss `ÉCLAIR` on the replica and find it on
/// the primary: the same read answered differently depending on where it ran.
pub fn fold_case(text: &str) -> String {
    text.to_ascii_lowercase()
}

/// `select * from table where filters [and (time, id) < after] order by time desc, id desc
/// limit n`: newest first, keyset-paginated.
#[derive(Debug, Clone)]
pub struct Select {
    pub table: &'static Table,
    pub filters: Vec<Filter>,
    /// The timestamp column of the keyset order.
    pub order_by: &'static str,
    /// The (time, id) of the last row of the previous page.
    pub after: Option<(String, String)>,
    pub limit: i64,
}

impl Select {
    fn kind(&self, column: &str) -> ColumnKind {
        self.table
            .columns
            .iter()
            .find(|c| c.name == column)
            .map_or(ColumnKind::Text, |c| c.kind)
    }

    /// The SQL and its text parameters; `placeholder(n, kind)` renders parameter `n`.
    fn render(
        &self,
        select_list: &str,
        placeholder: impl Fn(usize, ColumnKind) -> String,
    ) -> (String, Vec<String>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        let next = |value: &str, kind: ColumnKind, params: &mut Vec<String>| {
            params.push(value.to_owned());
            placeholder(params.len(), kind)
        };
        for filter in &self.filters {
            let clause = match filter {
                Filter::Eq(c, v) => format!("{c} = {}", next(v, self.kind(c), &mut params)),
                Filter::AtLeast(c, v) => format!("{c} >= {}", next(v, self.kind(c), &mut params)),
                Filter::Before(c, v) => format!("{c} < {}", next(v, self.kind(c), &mut params)),
                Filter::Contains(c, v) => {
                    let p = next(v, ColumnKind::Text, &mut params);
                    // instr (SQLite) and strpos (Postgres): the same, by another name.
                    // SQLite's lower() folds ASCII only; Postgres's folds every letter its
                    // collation knows, so there the ASCII letters are folded by hand: both
                    // paths must find the same rows (see `fold_case`).
                    match p.starts_with('?') {
                        true => format!("instr(lower({c}), {p}) > 0"),
                        false => format!(
                            "strpos(translate({c}, '{ASCII_UPPER}', '{ASCII_LOWER}'), {p}) > 0"
                        ),
                    }
                }
            };
            clauses.push(clause);
        }
        if let Some((time, id)) = &self.after {
            let time = next(time, ColumnKind::Timestamptz, &mut params);
            let id = next(id, ColumnKind::Uuid, &mut params);
            clauses.push(format!("({}, id) < ({time}, {id})", self.order_by));
        }
        let sql = format!(
            "select {select_list} from {} where {} order by {} desc, id desc limit {}",
            self.table.name,
            if clauses.is_empty() {
                "true".to_owned()
            } else {
                clauses.join(" and ")
            },
            self.order_by,
            self.limit.max(0)
        );
        (sql, params)
    }

    fn sqlite(&self) -> (String, Vec<String>) {
        let columns: Vec<&str> = self.table.column_names().collect();
        self.render(&columns.join(", "), |n, _| format!("?{n}"))
    }

    /// The page is selected first and rendered to JSON after: if the planner sorts (a
    /// bitmap scan plus a top-N sort, as it picks on a table without statistics yet) the
    /// projection would otherwise run for every row of the owner, not for the page's
    /// (`docs/PERF.md`).
    fn postgres(&self) -> (String, Vec<String>) {
        let (page, params) = self.render("*", |n, kind| match kind {
            ColumnKind::Uuid => format!("${n}::text::uuid"),
            ColumnKind::Timestamptz => format!("${n}::text::timestamptz"),
            ColumnKind::Int4 | ColumnKind::Int8 => format!("${n}::text::bigint"),
            ColumnKind::Text => format!("${n}::text"),
        });
        let sql = format!(
            "select to_jsonb(page.*)::text from ({page}) page \
             order by page.{} desc, page.id desc",
            self.order_by
        );
        (sql, params)
    }
}

/// On a pooled replica reader, through [`Store::replica_read`].
pub(super) async fn fetch_replica(store: &Store, select: Select) -> Result<Vec<Row>, StoreError> {
    let span = tracing::debug_span!("replica.query", table = select.table.name);
    let (sql, params) = select.sqlite();
    store
        .replica_read(span, move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let width = select.table.columns.len();
            let rows = stmt
                .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    (0..width)
                        .map(|i| r.get::<_, rusqlite::types::Value>(i))
                        .collect()
                })?
                .collect::<rusqlite::Result<Vec<Vec<_>>>>()?;
            Ok(rows
                .into_iter()
                .map(|values| Row::new(select.table, values))
                .collect())
        })
        .await
}

#[tracing::instrument(
    level = "debug",
    name = "primary.query",
    skip_all,
    fields(table = select.table.name, otel.kind = "client", db.system.name = "postgresql")
)]
pub(super) async fn fetch_primary(store: &Store, select: Select) -> Result<Vec<Row>, StoreError> {
    tracing::debug!(table = select.table.name, "read served by the primary");
    let client = store.primary().get_for_read().await?;
    let (sql, params) = select.postgres();
    let stmt = client.prepare_cached(&sql).await?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
    let rows = client.query(&stmt, &refs).await?;
    rows.iter()
        .map(|r| Row::from_json(select.table, r.get::<_, &str>(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use auto_order_sync::catalog::ORDERS;

    fn select() -> Select {
        Select {
            table: &ORDERS,
            filters: vec![
                Filter::Eq("owner_id", "alice".into()),
                Filter::AtLeast("ordered_at", "2026-01-01T00:00:00.000000Z".into()),
            ],
            order_by: "ordered_at",
            after: Some(("2026-02-01T00:00:00.000000Z".into(), "0000".into())),
            limit: 21,
        }
    }

    #[test]
    fn postgres_sql_casts_every_text_parameter_to_the_column_type() {
        let (sql, params) = select().postgres();
        assert_eq!(
            sql,
            "select to_jsonb(page.*)::text from (select * from orders where owner_id = $1::text \
             and ordered_at >= $2::text::timestamptz and (ordered_at, id) < \
             ($3::text::timestamptz, $4::text::uuid) order by ordered_at desc, id desc limit 21) \
             page order by page.ordered_at desc, page.id desc"
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn a_substring_filter_folds_ascii_only_on_both_databases() {
        let mut s = select();
        s.filters = vec![Filter::Contains("currency", fold_case("ÉUR"))];

        let (pg, pg_params) = s.postgres();
        let (lite, _) = s.sqlite();

        assert_eq!(pg_params[0], "Éur");
        assert!(
            pg.contains(
                "strpos(translate(currency, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', \
                 'abcdefghijklmnopqrstuvwxyz'), $1::text) > 0"
            ),
            "{pg}"
        );
        assert!(lite.contains("instr(lower(currency), ?1) > 0"), "{lite}");
    }

    #[test]
    fn sqlite_sql_numbers_its_parameters() {
        let (sql, _) = select().sqlite();
        assert!(
            sql.contains("where owner_id = ?1 and ordered_at >= ?2"),
            "{sql}"
        );
        assert!(sql.contains("(ordered_at, id) < (?3, ?4)"), "{sql}");
    }
}
