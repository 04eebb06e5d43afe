//! Commands for one instance of a domain: protecting it from destroys, or lifting that.

use super::{Daemon, OpError};
use crate::model::InstanceState;
use crate::store::InstanceRecord;

impl Daemon {
    /// Protects a live instance of `domain` from destroys while it is healthy (or lifts that),
    /// as an operator; the domain decides again at once.
    pub async fn protect_instance(
        &self,
        domain: &str,
        id: &str,
        protected: bool,
    ) -> Result<InstanceRecord, OpError> {
        let store = &self.services.store;
        self.owned(domain).await?;
        let inst = store
            .instance(id)?
            .filter(|i| i.domain == domain && i.state < InstanceState::Terminating)
            .ok_or_else(|| {
                OpError::NotFound(format!("domain '{domain}' has no live instance '{id}'"))
            })?;
        let updated = store
            .set_protected(id, protected, "operator")?
            .unwrap_or(inst);
        self.services.wakeups.wake(domain);
        Ok(updated)
    }
}
