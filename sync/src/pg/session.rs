//! One connection to the upstream Postgres as the engine uses it: the client and the pull's
//! statements prepared on it, behind the engine's [`Session`] trait.

use tokio::sync::mpsc;
use tokio_postgres::Client;

use super::horizon::horizon_holder;
use super::pull::{self, PullStatements};
use super::schema::check_primary_schema;
use super::snapshot::copy_snapshot;
use super::verify::check_history;
use crate::change::{HistoryCheck, PrimaryView, PullFrom, PullOutcome, SnapshotItem};
use crate::change::{HorizonHolder, ResyncReason};
use crate::engine::upstream::{Connected, Session};
use crate::error::SyncError;
use crate::history::Window;

/// A connected client with the pull's statements prepared on it.
pub struct PgSession {
    client: Client,
    statements: PullStatements,
}

impl PgSession {
    /// Checks the schema (a destructive difference is a precise fatal error, before any
    /// statement could fail on it), then prepares the pull's statements.
    pub async fn start(client: Client) -> Result<Connected<PgSession>, SyncError> {
        let schema_newer = check_primary_schema(&client).await?;
        let statements = PullStatements::prepare(&client).await?;
        Ok(Connected {
            session: PgSession { client, statements },
            schema_newer,
        })
    }
}

impl Session for PgSession {
    async fn pull(
        &mut self,
        from: PullFrom<'_>,
        check: impl Fn(&PrimaryView) -> Option<ResyncReason> + Send + Sync,
    ) -> Result<PullOutcome, SyncError> {
        pull::pull(&mut self.client, &self.statements, from, check).await
    }

    async fn count_backlog(&mut self, watermark: u64, cap: i64) -> Result<u64, SyncError> {
        pull::count_backlog(&self.client, watermark, cap).await
    }

    async fn snapshot(
        &mut self,
        sink: mpsc::Sender<SnapshotItem>,
        key_order: bool,
    ) -> Result<u64, SyncError> {
        copy_snapshot(&mut self.client, sink, key_order).await
    }

    async fn check_history(
        &mut self,
        windows: &[Window],
    ) -> Result<(HistoryCheck, PrimaryView, Option<i32>), SyncError> {
        check_history(&mut self.client, windows).await
    }

    async fn horizon_holder(&mut self, xmin: u64) -> Result<Option<HorizonHolder>, SyncError> {
        horizon_holder(&self.client, xmin).await
    }
}
