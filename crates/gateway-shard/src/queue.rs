//! Identify coordination across processes: twilight asks this queue before every IDENTIFY.
//!
//! Discord allows one IDENTIFY per `max_concurrency` bucket (shard id modulo `max_concurrency`)
//! every 5 seconds, across every process of the bot. A shard takes the bus lock of its bucket
//! (on RabbitMQ, the exclusive consumer of `disco.lock.identify.<bucket>`), identifies, and keeps
//! the lock 5 seconds more. A process that dies holding it gives it back by dying.
//!
//! Before every IDENTIFY the shard also reads the bot's daily session budget (`GET
//! /gateway/bot`, fresh: every process of the bot spends from it) and never spends below the
//! floor: a shard that would waits, and asks again later, rather than leave the bot without
//! the identifies it needs in an emergency (running out ends every session and resets the
//! token).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;
use tracing::{error, warn};
use twilight_gateway::queue::Queue;

/// The wait Discord requires between two IDENTIFYs of a bucket, plus a margin for the time
/// between the go-ahead and the IDENTIFY frame reaching Discord. 250 ms was too little: with 64
/// shards starting on two busy cores (CI), IDENTIFYs of one bucket reached the simulator 4.8 s
/// apart.
const HOLD: Duration = Duration::from_millis(5_750);

/// How long a shard that found the budget at its floor waits before asking again.
const BUDGET_BACKOFF: Duration = Duration::from_secs(60);

/// The daily session budget, as every IDENTIFY checks it.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub(crate) rest: Arc<twilight_http::Client>,
    /// Identifies never spent.
    pub(crate) floor: u32,
    /// `disco_gateway_shard_session_start_remaining`.
    pub(crate) remaining: Gauge,
}

impl Budget {
    /// Whether one more IDENTIFY stays above the floor. A budget that cannot be read lets it
    /// through: the check is a reserve, not a reason to stay down.
    async fn allows_one(&self, shard: u32) -> bool {
        let remaining = match self.rest.gateway().authed().await {
            Ok(response) => match response.model().await {
                Ok(info) => info.session_start_limit.remaining,
                Err(_) => return true,
            },
            Err(error) => {
                warn!(
                    error = &error as &dyn std::error::Error,
                    shard, "cannot read the session budget; identifying anyway"
                );
                return true;
            }
        };
        self.remaining.set(i64::from(remaining));
        if remaining > self.floor {
            return true;
        }
        error!(
            shard,
            remaining,
            floor = self.floor,
            "the daily session budget is at its floor: not identifying (waiting for it to reset)"
        );
        false
    }
}

/// A twilight identify queue backed by the bus's lock, and guarding the session budget.
#[derive(Clone, Debug)]
pub(crate) struct BusQueue {
    bus: bus::Bus,
    max_concurrency: u32,
    budget: Budget,
}

impl BusQueue {
    pub(crate) fn new(bus: bus::Bus, max_concurrency: u32, budget: Budget) -> Self {
        Self {
            bus,
            max_concurrency: max_concurrency.max(1),
            budget,
        }
    }
}

impl Queue for BusQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (go, wait) = oneshot::channel();
        let bus = self.bus.clone();
        let budget = self.budget.clone();
        let bucket = shard % self.max_concurrency;
        tokio::spawn(async move {
            // An error here drops `go`, which makes twilight ask again.
            let lock = match bus.lock(&format!("identify.{bucket}")).await {
                Ok(lock) => lock,
                Err(error) => {
                    warn!(
                        error = &error as &dyn std::error::Error,
                        shard, bucket, "cannot take the identify lock"
                    );
                    return;
                }
            };
            if !budget.allows_one(shard).await {
                drop(lock);
                // Dropping `go` makes twilight ask again: not before a while.
                tokio::time::sleep(BUDGET_BACKOFF).await;
                return;
            }
            if go.send(()).is_ok() {
                tokio::time::sleep(HOLD).await;
            }
            drop(lock);
        });
        wait
    }
}
