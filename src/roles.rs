//! `auto-order roles --edge <role>`: least privilege on the primary. One role owns the
//! schema and runs the migrations (`MIGRATION_DATABASE_URL`); each edge connects as another
//! (`DATABASE_URL`) that may read and write the API's rows and follow the change stream,
//! and cannot alter the schema. The grants are `sql/roles/edge.sql`.
//!
//! The role itself (with its password) is the operator's to create: passwords do not
//! belong in migrations or command lines (docs/DEPLOY.md shows the statements).

use anyhow::Context;
use tokio_postgres::Client;

/// The grants, with `{edge}` standing for the role.
const EDGE_GRANTS: &str = include_str!("../sql/roles/edge.sql");

/// Grants `role` what an edge needs, in one transaction. `role` must already exist.
pub async fn grant_edge(client: &mut Client, role: &str) -> anyhow::Result<()> {
    let quoted = quote_role(role)?;
    let tx = client.transaction().await?;
    let exists: bool = tx
        .query_one(
            "select exists (select 1 from pg_roles where rolname = $1)",
            &[&role],
        )
        .await?
        .get(0);
    anyhow::ensure!(
        exists,
        "role {role:?} does not exist: create it first (create role {role} login password '…')"
    );
    tx.batch_execute(&EDGE_GRANTS.replace("{edge}", &quoted))
        .await
        .with_context(|| format!("Failed to grant the edge privileges to {role:?}"))?;
    tx.commit().await?;
    Ok(())
}

/// The role as a quoted identifier; only plain names (`[a-z_][a-z0-9_]*`, at most 63
/// bytes) are accepted, so nothing else can reach the SQL.
fn quote_role(role: &str) -> anyhow::Result<String> {
    let plain = !role.is_empty()
        && role.len() <= 63
        && role
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !role.starts_with(|c: char| c.is_ascii_digit());
    anyhow::ensure!(
        plain,
        "the role name must be lowercase letters, digits and _ (got {role:?})"
    );
    Ok(format!("\"{role}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_role_names_reach_the_sql() {
        assert_eq!(
            quote_role("auto_order_edge").unwrap(),
            "\"auto_order_edge\""
        );
        for bad in ["", "Edge", "edge; drop table products", "e\"x", "1edge"] {
            assert!(quote_role(bad).is_err(), "{bad:?}");
        }
    }
}
