//! The engine's state: what it does next, and what it holds to do it. A state carries
//! exactly what its step needs: the session lives in [`State::Streaming`] and
//! [`State::Resync`], so a step never runs without a connection, and leaving for
//! [`State::Connecting`] (any error, a standby to leave) drops the session, the prefetched
//! batch and the cursor together.

use crate::change::ResyncReason;
use crate::change::{Pulled, ReplicaState};

pub(crate) enum State<S> {
    /// No connection: the next step connects.
    Connecting,
    /// Connected, the replica follows the log: the next step pulls and applies a batch, or
    /// checks the applied history when that is due. (Boxed: it is most of the state's size,
    /// and it moves from step to step.)
    Streaming(Box<Stream<S>>),
    /// Connected: the next step rebuilds the replica from a snapshot.
    Resync { session: S, reason: ResyncReason },
}

/// What streaming holds between steps.
pub(crate) struct Stream<S> {
    pub session: S,
    /// The replica's cursor as this engine last committed or read it, so that a pull does
    /// not first wait on the writer thread to read it back. (A cursor moved behind the
    /// engine's back, by `auto-order resync` say, makes the apply refuse the batch: an
    /// error, and the next connect reads the replica again.)
    pub cursor: ReplicaState,
    /// The next batch, pulled while the previous one was being applied.
    pub prefetched: Option<Prefetched>,
    /// A history check to run before the next pull.
    pub verify: Option<Verify>,
}

impl<S> Stream<S> {
    /// Streaming from `cursor` on `session`, with a history check first if `verify`.
    pub fn state(session: S, cursor: ReplicaState, verify: Option<Verify>) -> State<S> {
        State::Streaming(Box::new(Stream {
            session,
            cursor,
            prefetched: None,
            verify,
        }))
    }
}

/// A batch pulled ahead, valid only for exactly the cursor it was pulled against (a resync
/// in between, even to the same watermark, changes the snapshot filter).
pub(crate) struct Prefetched {
    pub from: u64,
    pub snapshot: Option<String>,
    pub pulled: Pulled,
}

/// How much of the applied history the next check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Every retained window: at connect, or when the timeline changed.
    All,
    /// The windows opened since the last check: the periodic check.
    Recent,
}

/// A state without what it holds: for logs, the error path and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    Connecting,
    Streaming,
    Resync(ResyncReason),
}

impl<S> State<S> {
    pub fn kind(&self) -> StateKind {
        match self {
            State::Connecting => StateKind::Connecting,
            State::Streaming(_) => StateKind::Streaming,
            State::Resync { reason, .. } => StateKind::Resync(*reason),
        }
    }

    /// The connection this state holds, if any.
    pub fn into_session(self) -> Option<S> {
        match self {
            State::Connecting => None,
            State::Streaming(stream) => Some(stream.session),
            State::Resync { session, .. } => Some(session),
        }
    }
}
