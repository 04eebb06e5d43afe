//! Commands for a domain's deployable: a new version of it, and rolling refreshes to it.

use super::{unknown_domain, Daemon, OpError};
use crate::model::{Deployable, Refresh, RefreshRequest};
use crate::store::DomainRecord;

impl Daemon {
    /// The record of a domain this daemon owns, or why there is none here (another node owns
    /// it, or it does not exist).
    pub(super) async fn owned(&self, domain: &str) -> Result<DomainRecord, OpError> {
        match self.services.store.domain(domain)? {
            Some(record) => Ok(record),
            None => Err(self
                .elsewhere(domain)
                .await
                .unwrap_or_else(|| unknown_domain(domain))),
        }
    }

    /// Makes `deployable` the domain's next version: new instances run it from now on, and
    /// `refresh` replaces the running ones. Returns the version.
    pub async fn update_deployable(
        &self,
        domain: &str,
        deployable: Deployable,
    ) -> Result<i64, OpError> {
        let record = self.owned(domain).await?;
        let invalid = |e: String| OpError::Invalid(e);
        let same_driver =
            std::mem::discriminant(&deployable) == std::mem::discriminant(&record.spec.deployable);
        if !same_driver {
            return Err(invalid(format!(
                "domain '{domain}' runs on another driver: a new version keeps the driver; \
                 add a new domain to change it"
            )));
        }
        let mut spec = record.spec;
        spec.deployable = deployable;
        spec.check().map_err(|e| invalid(format!("{e:#}")))?;
        self.services
            .provisioner
            .check(&spec)
            .await
            .map_err(invalid)?;
        let version = self
            .services
            .store
            .update_deployable(domain, &spec.deployable)?;
        self.services.wakeups.wake(domain);
        Ok(version)
    }

    /// Starts a rolling refresh of the domain to its current deployable (or, with
    /// `rollback`, back to the version before it).
    pub async fn refresh(&self, domain: &str, req: RefreshRequest) -> Result<Refresh, OpError> {
        let (batch, min_healthy) = req
            .checked()
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        let record = self.owned(domain).await?;
        if record.spec.dry_run {
            return Err(OpError::Invalid(format!(
                "domain '{domain}' is a dry run: it launches nothing, so it has nothing to refresh"
            )));
        }
        let refresh = self
            .services
            .store
            .start_refresh(domain, batch, min_healthy, req.rollback)
            .map_err(|e| OpError::Invalid(format!("{e:#}")))?;
        self.services.wakeups.wake(domain);
        Ok(refresh)
    }
}
