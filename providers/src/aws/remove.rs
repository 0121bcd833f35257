//! Targeted scale-in on an Auto Scaling Group: exactly the named instances terminated
//! with the desired capacity decremented, and the in-service ones protected from the
//! group's own choice.

use super::*;

impl AwsProvider {
    /// Protects `ids` from scale-in, where Capstan chooses the instances that leave
    /// (`set_targeted`), so a lower desired capacity never lets the group
    /// choose: at most 50 ids a request, as the API takes.
    pub(super) async fn protect(
        &self,
        ids: &[String],
        fence: &dyn crate::Fence,
    ) -> Result<(), ProviderError> {
        let targeted = self.targeted.load(std::sync::atomic::Ordering::Relaxed);
        if !targeted || ids.is_empty() {
            return Ok(());
        }
        let clients = self.clients().await;
        for chunk in ids.chunks(50) {
            fence.admit()?;
            clients
                .asg
                .set_instance_protection()
                .auto_scaling_group_name(&self.settings.asg)
                .set_instance_ids(Some(chunk.to_vec()))
                .protected_from_scale_in(true)
                .send()
                .await
                .map_err(|e| map_error("SetInstanceProtection", e))?;
        }
        // Read again before the next apply.
        *self.group.lock().await = None;
        Ok(())
    }

    /// `TerminateInstanceInAutoScalingGroup` with `ShouldDecrementDesiredCapacity` for
    /// each of `ids` the group still holds (read fresh, so a retry or a new leader
    /// finishing the same removal sends nothing twice), each behind `fence`.
    pub(super) async fn terminate(
        &self,
        ids: &[String],
        fence: &dyn crate::Fence,
    ) -> Result<(), ProviderError> {
        let (description, group) = self.describe_group().await?;
        *self.group.lock().await = Some(group);
        let clients = self.clients().await;
        let present = description
            .instances
            .iter()
            .filter(|i| i.lifecycle != Lifecycle::Terminating && ids.contains(&i.id));
        for instance in present {
            fence.admit()?;
            let sent = clients
                .asg
                .terminate_instance_in_auto_scaling_group()
                .instance_id(&instance.id)
                .should_decrement_desired_capacity(true)
                .send()
                .await;
            // The desired capacity has changed (or may have): read again next time.
            *self.group.lock().await = None;
            match sent.map_err(|e| map_error("TerminateInstanceInAutoScalingGroup", e)) {
                Ok(_) => {}
                // Gone between the read and the call: removed, as asked.
                Err(ProviderError::Validation { message }) if is_gone(&message) => {
                    tracing::debug!(instance = %instance.id, %message, "already gone");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Whether an AWS validation message says the instance is no longer the group's
/// ("Instance Id not found - No managed instance found for instance ID …").
fn is_gone(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("no managed instance")
}
