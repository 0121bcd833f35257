//! Cloud operations beside the pass. A pool's target is sent by a task of its own
//! ([`start`]), so a cloud that takes minutes, or an endpoint that hangs, holds
//! only its own pool: the pass plans every pool every interval whatever is in flight.
//!
//! An operation is in the pool's decision state ([`Operation`]) from the moment it is
//! submitted until its end is seen, so a pool with one in flight is sent no new target,
//! and a new leader (after a failover or a restart) goes on polling the cloud's handle
//! instead of submitting again. Each mutating request is checked against the claim
//! right before it is sent ([`ClaimFence`]), and the whole submission ([`start`]) is bounded by the
//! claim's `valid_until`: past it the call is dropped, and no retry goes out.

use tokio::task::JoinHandle;
use tokio::time::Instant;

use capstan_providers::{Applied, Fence, OperationHandle};

use super::*;
use crate::state::memory::Operation;

/// A provider call running beside the pass: a submission or a poll.
pub type Call = JoinHandle<Result<Applied, ProviderError>>;

/// How long a pass waits for a submission it has just started before it goes on: a
/// cloud that answers at once (AWS) is seen scaled in the same pass, a slow one is left
/// in flight. A quarter of the interval, between 50 ms and 2 s.
pub fn submit_grace(interval: Duration) -> Duration {
    (interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(2))
}

/// The leader's claim as the providers' fence: a mutating request goes out only while
/// this agent may act.
#[derive(Debug)]
pub struct ClaimFence(pub tokio::sync::watch::Receiver<Claim>);

impl Fence for ClaimFence {
    fn check(&self) -> Result<(), String> {
        self.0.borrow().may_act(Instant::now())
    }
}

/// Starts sending `target` to `pool`'s provider beside the pass (with `remove` named,
/// a removal of exactly those instances, `target` being the pool's size after it), and
/// records the operation in the pool's decision state. The call is bounded by the
/// claim's `valid_until`: past it the call is dropped (and the SDK's retries with it),
/// and nothing more is sent.
pub(super) fn start(
    pool: &mut PoolRuntime,
    target: CapacityTarget,
    from: u32,
    remove: Vec<String>,
    claim: &tokio::sync::watch::Receiver<Claim>,
    now: DateTime<Utc>,
) {
    let provider = pool.provider.clone();
    let fence = ClaimFence(claim.clone());
    let deadline = claim.borrow().valid_until;
    let ids = remove.clone();
    pool.call = Some(tokio::spawn(async move {
        let call = async {
            if ids.is_empty() {
                provider.submit(&target, &fence).await
            } else {
                provider.submit_remove(&ids, &fence).await
            }
        };
        match deadline {
            None => call.await,
            Some(deadline) => tokio::time::timeout_at(deadline, call)
                .await
                .unwrap_or_else(|_| {
                    Err(ProviderError::Fenced {
                        message: "cut off: the leadership lease ran out before the cloud answered; nothing more is sent, and the next pass sees what the cloud did with what went out".to_owned(),
                    })
                }),
        }
    }));
    pool.memory.operation = Some(Operation {
        handle: None,
        started_at: now,
        target,
        from,
        remove,
    });
    pool.memory
        .provisioning
        .submitted(now, from, target.capacity);
}

fn start_poll(pool: &mut PoolRuntime, handle: OperationHandle) {
    let provider = pool.provider.clone();
    pool.call = Some(tokio::spawn(async move { provider.poll(&handle).await }));
}

/// Where a pool's operation stands this pass.
#[derive(Debug)]
pub(super) enum Standing {
    /// Still in flight.
    Running,
    /// The cloud carried it out.
    Done,
    /// The cloud (or the fence) refused it, or it failed.
    Failed(ProviderError),
    /// Submitted by a process that is gone, before the cloud gave a handle (a call that
    /// completes when it returns, cut short): its outcome is what the pool's
    /// description shows now.
    Unknown,
}

/// Where `pool`'s operation stands, waiting at most `wait` for its call. A call that
/// has not finished is left running. While the cloud says the operation runs, the next
/// poll is started at once, beside the pass, and its answer read by the next pass; an
/// operation known only by its handle (restored from decision state by a new leader)
/// is polled the same way.
pub(super) async fn standing(pool: &mut PoolRuntime, wait: Duration) -> Standing {
    let Some(op) = &pool.memory.operation else {
        return Standing::Done;
    };
    let Some(call) = pool.call.as_mut() else {
        return match op.handle.clone() {
            Some(handle) => {
                start_poll(pool, handle);
                Standing::Running
            }
            None => Standing::Unknown,
        };
    };
    // The call is looked at once even with no wait: a finished one answers at once.
    let Ok(joined) = tokio::time::timeout(wait, &mut *call).await else {
        return Standing::Running;
    };
    pool.call = None;
    match joined {
        Ok(Ok(Applied::Done)) => Standing::Done,
        Ok(Ok(Applied::Running(handle))) => {
            if let Some(op) = pool.memory.operation.as_mut() {
                op.handle = Some(handle.clone());
            }
            start_poll(pool, handle);
            Standing::Running
        }
        Ok(Err(e)) => Standing::Failed(e),
        Err(e) => Standing::Failed(ProviderError::Transient {
            message: format!("the provider call's task ended: {e}"),
        }),
    }
}

/// How long `op` has been in flight at `now`.
pub(super) fn age(op: &Operation, now: DateTime<Utc>) -> Duration {
    (now - op.started_at).to_std().unwrap_or_default()
}

/// Gives up on `pool`'s operation: stops following it here (the cloud may carry on;
/// the next pass's description shows what it did).
pub(super) fn abandon(pool: &mut PoolRuntime) {
    if let Some(call) = pool.call.take() {
        call.abort();
    }
    pool.memory.operation = None;
}
