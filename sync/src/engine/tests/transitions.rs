use std::time::Duration;

use super::fakes::{FakeUpstream, Recording, engine, evidence};
use crate::engine::{Engine, EngineConfig, StateKind, Step};
use crate::error::SyncError;
use crate::handle::{Phase, ResyncReason, SyncHandle};
use crate::source::Upstream as Server;

type TestEngine = Engine<FakeUpstream, Recording>;

/// An engine that has connected, loaded the (empty) primary and streams from its horizon.
async fn streaming(
    dir: &tempfile::TempDir,
    config: EngineConfig,
) -> (TestEngine, SyncHandle<Recording>, FakeUpstream) {
    let (mut engine, handle, upstream) = engine(dir, config).await;
    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(
        engine.state(),
        StateKind::Resync(ResyncReason::EmptyReplica)
    );
    let resynced = engine.step().await.unwrap();
    assert_eq!(
        resynced,
        Step::Resynced {
            reason: ResyncReason::EmptyReplica,
            rows: 0
        }
    );
    assert_eq!(engine.state(), StateKind::Streaming);
    (engine, handle, upstream)
}

async fn products_in_replica(handle: &SyncHandle<Recording>) -> i64 {
    handle
        .replica()
        .replica
        .with_writer(|conn| Ok(conn.query_row("select count(*) from products", [], |r| r.get(0))?))
        .await
        .unwrap()
}

fn applied(changes: usize) -> Step {
    Step::Applied {
        changes,
        caught_up: true,
        held_back: None,
    }
}

#[tokio::test]
async fn an_empty_replica_is_loaded_from_a_snapshot_then_follows_the_log_from_its_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let (_engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;

    assert_eq!(handle.watermark(), 100, "the snapshot's horizon");
    assert!(handle.status().ready);
    assert_eq!(handle.status().resyncs, 1);
    // Bulk (not key order) into an empty replica, with nothing forked.
    assert_eq!(upstream.lock().snapshots, [false]);
    assert_eq!(*handle.replica().loads.lock().unwrap(), [false]);
}

#[tokio::test]
async fn applied_batches_move_the_watermark_and_bring_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;

    upstream.lock().commit(100, &[1, 2]);
    assert_eq!(engine.step().await.unwrap(), applied(2));
    assert_eq!(handle.watermark(), 101);
    upstream.lock().commit(105, &[3]);
    assert_eq!(engine.step().await.unwrap(), applied(1));
    assert_eq!(handle.watermark(), 106);

    assert_eq!(products_in_replica(&handle).await, 3);
    let status = handle.status();
    assert_eq!((status.applied_batches, status.applied_changes), (2, 3));
    assert_eq!(status.phase, Phase::Streaming);
    assert_eq!(engine.state(), StateKind::Streaming);
    // Caught up: the next step waits for the poll (or a wake).
    assert_eq!(engine.pause, Some(EngineConfig::default().poll_interval));
}

#[tokio::test]
async fn catching_up_applies_whole_transactions_and_pulls_the_next_batch_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        batch_size: 2,
        ..EngineConfig::default()
    };
    let (mut engine, handle, upstream) = streaming(&dir, config).await;
    // A first batch past the resync's snapshot (a prefetch is only used for the cursor,
    // snapshot filter included, it was pulled for).
    upstream.lock().commit(100, &[9]);
    assert_eq!(engine.step().await.unwrap(), applied(1));
    {
        let mut primary = upstream.lock();
        primary.commit(101, &[1, 2]);
        primary.commit(102, &[3, 4, 5]);
        primary.commit(103, &[6]);
    }
    let pulls_before = upstream.lock().pulls;

    let first = engine.step().await.unwrap();
    assert_eq!(
        first,
        Step::Applied {
            changes: 2,
            caught_up: false,
            held_back: None
        }
    );
    assert_eq!(handle.watermark(), 102);
    assert_eq!(engine.pause, None, "catching up goes on at once");
    // The second transaction is larger than the batch: read whole.
    let second = engine.step().await.unwrap();
    assert_eq!(
        second,
        Step::Applied {
            changes: 3,
            caught_up: false,
            held_back: None
        }
    );
    assert_eq!(handle.watermark(), 103);
    assert_eq!(engine.step().await.unwrap(), applied(1));
    assert_eq!(handle.watermark(), 104);

    // Each step while catching up pulled the next batch ahead, and the next step used it:
    // three batches, three pulls (not one more per step).
    assert_eq!(upstream.lock().pulls - pulls_before, 3);
    assert_eq!(products_in_replica(&handle).await, 7);
    assert_eq!(handle.status().backlog, Some(0));
}

#[tokio::test]
async fn a_cursor_below_the_prune_point_resyncs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    {
        let mut primary = upstream.lock();
        primary.commit(100, &[1]);
        primary.commit(110, &[2]);
        primary.pruned_below = 105;
    }

    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(engine.state(), StateKind::Resync(ResyncReason::Pruned));
    assert_eq!(
        engine.step().await.unwrap(),
        Step::Resynced {
            reason: ResyncReason::Pruned,
            rows: 0
        }
    );
    assert_eq!(engine.state(), StateKind::Streaming);
    assert_eq!(handle.watermark(), 111);
    // A merge (key order) over the existing replica, not a fork.
    assert_eq!(upstream.lock().snapshots, [false, true]);
    assert_eq!(*handle.replica().loads.lock().unwrap(), [false, false]);
}

#[tokio::test]
async fn another_primary_identity_resyncs() {
    for change in ["system identifier", "sync epoch"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
        {
            let mut primary = upstream.lock();
            match change {
                "system identifier" => primary.system_id = Some(8),
                _ => primary.epoch = "epoch-2".into(),
            }
        }

        assert_eq!(engine.step().await.unwrap(), Step::Connected, "{change}");
        assert_eq!(
            engine.state(),
            StateKind::Resync(ResyncReason::PrimaryChanged),
            "{change}"
        );
        engine.step().await.unwrap();
        assert_eq!(engine.state(), StateKind::Streaming);
        let resync = handle.status().last_resync.unwrap();
        assert_eq!(resync.reason, ResyncReason::PrimaryChanged, "{change}");
        assert_eq!(handle.status().resyncs, 2);
    }
}

#[tokio::test]
async fn a_fork_found_by_the_history_check_at_reconnect_resyncs_as_forked() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    upstream.lock().commit(100, &[1, 2]);
    engine.step().await.unwrap();
    // The connection drops; meanwhile the primary failed over to a standby that lacked
    // the applied transaction.
    {
        let mut primary = upstream.lock();
        primary
            .pull_errors
            .push_back(SyncError::Transient("connection reset".into()));
        primary.fork = Some(evidence(100, 101));
    }
    assert!(engine.step().await.is_err());
    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(
        upstream.lock().history_checks,
        0,
        "checked before the next pull"
    );

    assert_eq!(engine.step().await.unwrap(), Step::Forked);
    assert_eq!(upstream.lock().history_checks, 1);
    assert_eq!(engine.state(), StateKind::Resync(ResyncReason::Forked));
    let status = handle.status();
    assert_eq!(status.forks, 1);
    assert_eq!(status.last_fork.as_ref().unwrap().txids, (100, 101));

    upstream.lock().fork = None;
    assert_eq!(
        engine.step().await.unwrap(),
        Step::Resynced {
            reason: ResyncReason::Forked,
            rows: 0
        }
    );
    // The load was told the replica's rows come from a lost history.
    assert_eq!(*handle.replica().loads.lock().unwrap(), [false, true]);
    assert_eq!(engine.state(), StateKind::Streaming);
}

#[tokio::test]
async fn a_matching_history_keeps_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    upstream.lock().commit(100, &[1]);
    engine.step().await.unwrap();
    upstream
        .lock()
        .pull_errors
        .push_back(SyncError::Transient("connection reset".into()));
    assert!(engine.step().await.is_err());
    engine.step().await.unwrap();

    // A clean switchover: same history, one window checked, no resync.
    assert_eq!(
        engine.step().await.unwrap(),
        Step::Verified { windows: 2 },
        "the snapshot's window and the applied batch's"
    );
    assert_eq!(engine.state(), StateKind::Streaming);
    assert_eq!(handle.status().resyncs, 1);
    assert_eq!(handle.watermark(), 101);
}

#[tokio::test]
async fn a_standby_behind_the_replica_is_waited_for_and_a_primary_behind_it_forked() {
    for server in [Server::Standby, Server::Primary] {
        let dir = tempfile::tempdir().unwrap();
        let (mut engine, _handle, upstream) = streaming(&dir, EngineConfig::default()).await;
        upstream.lock().commit(100, &[1]);
        engine.step().await.unwrap();
        {
            // The server's horizon is below the watermark (101).
            let mut primary = upstream.lock();
            primary.server = server;
            primary.xmin = 90;
            primary.xmax = 90;
        }
        let step = engine.step().await.unwrap();
        match server {
            Server::Standby => {
                assert_eq!(step, applied(0), "no pull applies anything from behind");
                assert_eq!(engine.state(), StateKind::Streaming);
            }
            Server::Primary => {
                assert_eq!(step, Step::Forked);
                assert_eq!(engine.state(), StateKind::Resync(ResyncReason::Forked));
            }
        }
    }
}

#[tokio::test]
async fn a_lagging_server_is_left_after_its_pull_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    {
        let mut primary = upstream.lock();
        primary.commit(100, &[1]);
        primary.lags = true;
    }
    assert_eq!(engine.step().await.unwrap(), applied(1));
    assert_eq!(handle.watermark(), 101, "what was pulled is kept");
    assert_eq!(engine.state(), StateKind::Connecting);
    upstream.lock().lags = false;
    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(upstream.lock().connects, 2);
    assert_eq!(handle.status().resyncs, 1, "the cursor is kept");
}

#[tokio::test]
async fn a_streaming_engine_reconnects_when_the_preferred_server_is_due_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, _handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    upstream.lock().reconnect_due = true;
    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(upstream.lock().connects, 2);
    assert_eq!(engine.state(), StateKind::Streaming);
}

#[tokio::test]
async fn a_transient_error_goes_back_to_connecting_and_the_engine_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default();
    let (mut engine, handle, upstream) = streaming(&dir, config.clone()).await;
    {
        let mut primary = upstream.lock();
        primary
            .pull_errors
            .push_back(SyncError::Transient("connection reset".into()));
        primary
            .connect_errors
            .push_back(SyncError::Transient("connection refused".into()));
        primary.commit(100, &[1]);
    }

    let err = engine.step().await.unwrap_err();
    assert!(!err.is_fatal());
    assert_eq!(engine.state(), StateKind::Connecting);
    assert_eq!(engine.pause, Some(config.min_backoff));
    let status = handle.status();
    assert_eq!(status.phase, Phase::Retrying);
    assert!(!status.primary_reachable);
    assert!(status.last_error.unwrap().contains("connection reset"));

    // The primary still refuses: the back-off doubles.
    assert!(engine.step().await.is_err());
    assert_eq!(engine.state(), StateKind::Connecting);
    assert_eq!(engine.pause, Some(config.min_backoff * 2));

    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(engine.state(), StateKind::Streaming);
    assert!(matches!(
        engine.step().await.unwrap(),
        Step::Verified { .. }
    ));
    assert_eq!(engine.step().await.unwrap(), applied(1));
    assert_eq!(handle.watermark(), 101);
    let status = handle.status();
    assert_eq!(status.last_error, None);
    assert!(status.primary_reachable);
    assert_eq!(upstream.lock().connects, 2);
}

#[tokio::test]
async fn a_fatal_error_surfaces_in_the_status_and_is_retried_slowly() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default();
    let (mut engine, handle, upstream) = streaming(&dir, config.clone()).await;
    upstream.lock().pull_errors.push_back(SyncError::fatal(
        "replica schema does not match the primary",
    ));

    let err = engine.step().await.unwrap_err();
    assert!(err.is_fatal());
    assert_eq!(engine.state(), StateKind::Connecting);
    assert_eq!(engine.pause, Some(config.fatal_retry));
    let status = handle.status();
    assert!(status.last_error_fatal);
    assert_eq!(
        status.last_error.as_deref(),
        Some("replica schema does not match the primary")
    );
    assert_eq!(
        status.problem(Duration::from_secs(60)),
        Some("sync failing (fatal)")
    );
}

#[tokio::test]
async fn a_bad_row_image_is_a_fatal_error_and_nothing_of_its_transaction_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    {
        let mut primary = upstream.lock();
        primary.commit(100, &[1, 2]);
        primary.log[1].data = Some(crate::change::RowImage::Json(r#"{"id": 3}"#.into()));
    }
    assert!(engine.step().await.unwrap_err().is_fatal());
    assert_eq!(engine.state(), StateKind::Connecting);
    assert_eq!(handle.watermark(), 100);
    assert_eq!(
        products_in_replica(&handle).await,
        0,
        "the batch rolled back"
    );
}

#[tokio::test]
async fn a_resync_requested_while_streaming_runs_then_streaming_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    upstream.lock().commit(100, &[1]);
    assert!(handle.request_resync());

    assert_eq!(
        engine.step().await.unwrap(),
        Step::Resynced {
            reason: ResyncReason::Requested,
            rows: 0
        }
    );
    assert_eq!(engine.state(), StateKind::Streaming);
    assert_eq!(handle.watermark(), 101);
    assert_eq!(handle.status().resyncs, 2);
    assert_eq!(upstream.lock().connects, 1, "on the same connection");
    // The request was consumed.
    upstream.lock().commit(101, &[2]);
    assert_eq!(engine.step().await.unwrap(), applied(1));
}

#[tokio::test]
async fn a_requested_resync_that_fails_stands_and_waits_longer() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default();
    let (mut engine, handle, upstream) = streaming(&dir, config.clone()).await;
    upstream
        .lock()
        .snapshot_errors
        .push_back(SyncError::Transient("connection reset".into()));
    handle.request_resync();

    assert!(engine.step().await.is_err());
    assert_eq!(engine.state(), StateKind::Connecting);
    assert_eq!(handle.status().resync_failures, 1);
    assert_eq!(
        engine.pause,
        Some(config.resync_backoff.max(config.min_backoff))
    );
    assert_eq!(handle.watermark(), 100, "the old replica stays whole");

    // Reconnected, the operator's request still stands.
    assert_eq!(engine.step().await.unwrap(), Step::Connected);
    assert_eq!(
        engine.step().await.unwrap(),
        Step::Resynced {
            reason: ResyncReason::Requested,
            rows: 0
        }
    );
    assert_eq!(handle.status().resync_failures, 0);
}

#[tokio::test]
async fn resync_now_connects_first_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, handle, upstream) = streaming(&dir, EngineConfig::default()).await;
    upstream.lock().commit(100, &[1]);
    // From a fresh engine over the same replica (the `resync` command).
    drop(engine);
    let (mut outside, _) = Engine::from_parts(
        upstream.clone(),
        handle.replica().clone(),
        EngineConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        outside.resync_now().await.unwrap(),
        Step::Resynced {
            reason: ResyncReason::Requested,
            rows: 0
        }
    );
    assert_eq!(outside.state(), StateKind::Streaming);
    assert_eq!(upstream.lock().snapshots, [false, true]);
    assert_eq!(upstream.lock().connects, 2);
    assert_eq!(
        handle
            .replica()
            .replica
            .state()
            .await
            .unwrap()
            .unwrap()
            .watermark,
        101
    );
}

#[tokio::test]
async fn a_held_horizon_is_looked_at_again_soon_and_less_often_while_it_does_not_move() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig::default();
    let (mut engine, handle, upstream) = streaming(&dir, config.clone()).await;
    {
        // Transaction 100 committed; 101 to 104 still open (one of them holds the horizon).
        let mut primary = upstream.lock();
        primary.commit(100, &[1]);
        primary.xmax = 105;
    }
    let held = |changes, progressed| Step::Applied {
        changes,
        caught_up: true,
        held_back: Some(progressed),
    };
    assert_eq!(engine.step().await.unwrap(), held(1, true));
    assert_eq!(engine.pause, Some(config.held_back_retry));
    assert!(handle.status().horizon_held);
    assert_eq!(engine.step().await.unwrap(), held(0, false));
    assert_eq!(engine.pause, Some(config.held_back_retry * 2));
    // The horizon moves on: back to the usual poll.
    upstream.lock().xmax = 101;
    assert_eq!(engine.step().await.unwrap(), applied(0));
    assert_eq!(engine.pause, Some(config.poll_interval));
    assert!(!handle.status().horizon_held);
}

#[tokio::test]
async fn run_stops_at_shutdown_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, handle, upstream) = engine(&dir, EngineConfig::default()).await;
    upstream.lock().commit(100, &[1]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(engine.run(async {
        let _ = stopped.await;
    }));
    assert!(handle.wait_applied(99, Duration::from_secs(10)).await);
    stop.send(()).unwrap();
    running.await.unwrap();
    assert_eq!(handle.status().phase, Phase::Stopped);
}
