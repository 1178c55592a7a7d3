//! A node's cause, as the core passes it around: how a cancellation sets
//! it ([`CauseArg`]) and what a node answers when asked (`OwnCause`).
//! Neither names the node; `Link::cause` follows the answers up the tree.

use std::time::Instant;

use super::state::{self, INHERITED};
use crate::error::{Cause, Error};

/// How a cancellation sets the cause.
pub(crate) enum CauseArg {
    /// Use the cause stored at creation (a deadline firing with the
    /// `*_cause` argument of `with_deadline_cause`).
    Stored,
    /// Like `Stored`, from the timer, which read this time from its clock:
    /// ignored unless the node's deadline is at or before it (it was moved
    /// later by `extend_deadline` after the timer took the entry).
    Expired(Instant),
    /// Use this cause; `None` means "the error itself".
    Set(Option<Cause>),
    /// The last `CancelFunc` was dropped: the cause is `CancelFuncDropped`.
    Dropped,
    /// Ended by the library parent the node is registered with: the cause
    /// is that parent's, found through `parent` when asked.
    Inherited,
}

impl CauseArg {
    /// The done bits this cancellation leaves.
    #[inline]
    pub(super) fn done_bits(&self, err: Error) -> u8 {
        let flag = if matches!(self, CauseArg::Inherited) {
            INHERITED
        } else {
            0
        };
        state::done_bits(err, matches!(self, CauseArg::Dropped)) | flag
    }
}

/// What `CancelNode::own_cause` found.
pub(crate) enum OwnCause {
    Live,
    /// Ask the parent (the node was ended by it).
    Inherited,
    Cause(Cause),
}
