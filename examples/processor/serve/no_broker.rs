//! `broker.rs`'s stand-in in a build without the `nats` feature: the
//! service has no broker, and `--broker` says how to get one
//! (`run::NO_BROKER`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use goctx::Ctx;

use crate::run::task::Task;
use crate::run::{self, Emitter, RunConfig, Summary};

/// A broker connection, which this build cannot make.
pub struct Broker {
    pub url: String,
    never: Infallible,
}

impl Broker {
    pub async fn connect(_url: &str, _ack_wait: Duration) -> Result<Broker, String> {
        Err(run::NO_BROKER.to_owned())
    }
}

/// Never called: no `Broker` exists.
pub async fn run(
    broker: Arc<Broker>,
    _ctx: Ctx,
    _run_id: String,
    _config: RunConfig,
    _tasks: Vec<Task>,
    _events: Emitter,
) -> Summary {
    let never = broker.never;
    match never {}
}
