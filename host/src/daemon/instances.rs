//! Commands for one instance of a domain: protecting it from destroys, lifting that, and
//! destroying it as an operator.

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
        let inst = self.live_instance(domain, id).await?;
        let updated = store
            .set_protected(id, protected, "operator")?
            .unwrap_or(inst);
        self.services.wakeups.wake(domain);
        Ok(updated)
    }

    /// Destroys a live instance of `domain` now, as an operator: protection and drains do not
    /// apply. The domain decides again at once.
    pub async fn destroy_instance(
        &self,
        domain: &str,
        id: &str,
    ) -> Result<InstanceRecord, OpError> {
        let inst = self.live_instance(domain, id).await?;
        let store = &self.services.store;
        let spec = store
            .domain(domain)?
            .ok_or_else(|| super::unknown_domain(domain))?
            .spec;
        let detail = serde_json::json!({"by": "operator"});
        store.event(Some(domain), Some(id), "destroy-requested", detail)?;
        self.services.provisioner.destroy(&inst, &spec)?;
        self.services.wakeups.wake(domain);
        Ok(store.instance(id)?.unwrap_or(inst))
    }

    /// A live instance of a domain this daemon runs.
    async fn live_instance(&self, domain: &str, id: &str) -> Result<InstanceRecord, OpError> {
        self.owned(domain).await?;
        self.services
            .store
            .instance(id)?
            .filter(|i| i.domain == domain && i.state < InstanceState::Terminating)
            .ok_or_else(|| {
                OpError::NotFound(format!("domain '{domain}' has no live instance '{id}'"))
            })
    }
}
