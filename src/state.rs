//! What every handler and layer can reach ([`AppState`]): the configuration, the sync
//! engine's handle, the authenticator, the data layer (replica readers, primary pool), the read cache. It sits below the
//! routes and the data layer, which both take it, and imports neither.

use std::sync::Arc;

use auto_order_sync::SyncHandle;
use axum::extract::FromRef;

use crate::auth::Authenticator;
use crate::cache::ReadCache;
use crate::config::Config;
use crate::store::Store;

/// What every handler can reach: one `Arc`, so the clones axum makes for every layer and
/// extractor of every request cost one atomic increment, not one per service (those shared
/// counters bounce between cores and showed in read profiles).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

pub struct Services {
    pub config: Arc<Config>,
    pub sync: SyncHandle,
    pub auth: Authenticator,
    /// The data layer: the replica's readers and the primary's pool.
    pub store: Store,
    /// Rendered hot reads, invalidated by the sync engine's change events.
    pub cache: Arc<ReadCache>,
    /// The cooldown of forced resyncs.
    pub resync_gate: crate::resync_gate::ResyncGate,
}

impl AppState {
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(state: &AppState) -> Authenticator {
        state.auth.clone()
    }
}
