//! A recording fake provider with injectable errors, for tests of the agent.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use crate::{
    Applied, CapacityTarget, Fence, NodePoolProvider, OperationHandle, PoolDescription,
    ProviderError,
};

/// Records every call; errors queued with [`FakeProvider::fail_next_apply`] or
/// [`FakeProvider::fail_next_describe`] are returned by the next calls, in order, and
/// those queued with [`FakeProvider::lose_next_answer`] after the call was carried out.
#[derive(Debug)]
pub struct FakeProvider {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    description: PoolDescription,
    describe_calls: usize,
    apply_calls: Vec<CapacityTarget>,
    remove_calls: Vec<Vec<String>>,
    next_describe_err: VecDeque<ProviderError>,
    next_apply_err: VecDeque<ProviderError>,
    /// Answers for the next applies or removals, given after they were carried out.
    next_lost: VecDeque<ProviderError>,
    /// For each of the next submits: it starts an operation that answers "running" to
    /// this many polls before it is done.
    next_operations: VecDeque<usize>,
    /// Operations started: id → polls left before done.
    operations: Vec<(String, usize)>,
    poll_calls: usize,
}

impl FakeProvider {
    /// A fake that describes `description` and applies targets to it.
    pub fn new(description: PoolDescription) -> Self {
        Self {
            inner: Mutex::new(Inner {
                description,
                describe_calls: 0,
                apply_calls: Vec::new(),
                remove_calls: Vec::new(),
                next_describe_err: VecDeque::new(),
                next_apply_err: VecDeque::new(),
                next_lost: VecDeque::new(),
                next_operations: VecDeque::new(),
                operations: Vec::new(),
                poll_calls: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an error for the next `apply`.
    pub fn fail_next_apply(&self, err: ProviderError) {
        self.lock().next_apply_err.push_back(err);
    }

    /// The next `apply` or `remove` is carried out, then answers `err`: an answer
    /// lost on the way back (a timeout, a call cut off at the lease's end).
    pub fn lose_next_answer(&self, err: ProviderError) {
        self.lock().next_lost.push_back(err);
    }

    /// The next `submit` starts an operation (as Azure's and GKE's do) that stays
    /// running for `polls` polls, then is done.
    pub fn run_next_apply_as_operation(&self, polls: usize) {
        self.lock().next_operations.push_back(polls);
    }

    /// How often `poll` was called.
    pub fn poll_calls(&self) -> usize {
        self.lock().poll_calls
    }

    /// Queues an error for the next `describe`.
    pub fn fail_next_describe(&self, err: ProviderError) {
        self.lock().next_describe_err.push_back(err);
    }

    /// Every target `apply` was called with, including failed calls.
    pub fn apply_calls(&self) -> Vec<CapacityTarget> {
        self.lock().apply_calls.clone()
    }

    /// Every id list `remove` was called with, including failed calls.
    pub fn remove_calls(&self) -> Vec<Vec<String>> {
        self.lock().remove_calls.clone()
    }

    /// How often `describe` was called.
    pub fn describe_calls(&self) -> usize {
        self.lock().describe_calls
    }

    /// Replaces what `describe` returns.
    pub fn set_description(&self, description: PoolDescription) {
        self.lock().description = description;
    }

    /// Forgets recorded calls and queued errors.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.describe_calls = 0;
        inner.apply_calls.clear();
        inner.remove_calls.clear();
        inner.next_apply_err.clear();
        inner.next_describe_err.clear();
        inner.next_lost.clear();
        inner.next_operations.clear();
        inner.operations.clear();
        inner.poll_calls = 0;
    }
}

#[async_trait]
impl NodePoolProvider for FakeProvider {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let mut inner = self.lock();
        inner.describe_calls += 1;
        match inner.next_describe_err.pop_front() {
            Some(err) => Err(err),
            None => Ok(inner.description.clone()),
        }
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        let mut inner = self.lock();
        inner.apply_calls.push(*target);
        if let Some(err) = inner.next_apply_err.pop_front() {
            return Err(err);
        }
        inner.description.desired = target.capacity;
        inner.next_lost.pop_front().map_or(Ok(()), Err)
    }

    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        fence.admit()?;
        self.apply(target).await?;
        Ok(self.lock().started())
    }

    /// Removes the named instances the description holds and lowers its desired
    /// capacity by as many; errors queued with `fail_next_apply` come first.
    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        let mut inner = self.lock();
        inner.remove_calls.push(ids.to_vec());
        if let Some(err) = inner.next_apply_err.pop_front() {
            return Err(err);
        }
        let d = &mut inner.description;
        let before = d.instances.len();
        d.instances.retain(|i| !ids.contains(&i.id));
        let gone = u32::try_from(before - d.instances.len()).unwrap_or(u32::MAX);
        d.desired = d.desired.saturating_sub(gone);
        inner.next_lost.pop_front().map_or(Ok(()), Err)
    }

    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        fence.admit()?;
        self.remove(ids).await?;
        Ok(self.lock().started())
    }

    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        let mut inner = self.lock();
        inner.poll_calls += 1;
        let Some(left) = inner
            .operations
            .iter_mut()
            .find(|(id, _)| *id == op.id)
            .map(|(_, left)| left)
        else {
            return Err(ProviderError::NotFound {
                resource: format!("operation {}", op.id),
            });
        };
        if *left == 0 {
            return Ok(Applied::Done);
        }
        *left -= 1;
        Ok(Applied::Running(op.clone()))
    }
}

impl Inner {
    /// What a submission that the cloud accepted started: an operation, when one was
    /// queued with `run_next_apply_as_operation`.
    fn started(&mut self) -> Applied {
        match self.next_operations.pop_front() {
            Some(polls) => {
                let id = format!("op-{}", self.apply_calls.len() + self.remove_calls.len());
                self.operations.push((id.clone(), polls));
                Applied::Running(OperationHandle {
                    id,
                    via: String::new(),
                })
            }
            None => Applied::Done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_calls_and_returns_queued_errors_in_order() {
        let p = FakeProvider::new(PoolDescription {
            steps: Default::default(),
            min: 0,
            max: 5,
            desired: 1,
            instances: vec![],
        });
        p.fail_next_apply(ProviderError::Transient {
            message: "reset".into(),
        });
        let t = CapacityTarget::on_demand(3);
        assert!(p.apply(&t).await.is_err());
        assert!(p.apply(&t).await.is_ok());
        assert_eq!(p.apply_calls(), vec![t, t]);
        assert_eq!(p.describe().await.unwrap().desired, 3);
        p.fail_next_describe(ProviderError::NotFound {
            resource: "asg".into(),
        });
        assert!(p.describe().await.is_err());
        assert_eq!(p.describe_calls(), 2);
        p.reset();
        assert!(p.apply_calls().is_empty());
    }
}
