//! The seam between the provisioner and one kind of worker. A driver lives in its own folder
//! under `provisioner/`, implements [`Driver`], and is registered in
//! [`Provisioner::new`](super::Provisioner::new); nothing else dispatches on the kind.

use crate::model::DomainSpec;
use crate::store::InstanceRecord;
use anyhow::Result;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The answer of [`Driver::check`]: `Err` carries the reason, in words, for the user.
pub type Check<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// The error of a driver given a domain of another driver: a fault of the dispatch.
pub fn wrong_driver(driver: &str, spec: &DomainSpec) -> anyhow::Error {
    anyhow::anyhow!(
        "the {driver} driver was given domain '{}' of the {} driver",
        spec.name,
        spec.deployable.driver()
    )
}

/// Launches, destroys and watches the workers of the domains whose deployable names it.
///
/// Every method is given the domain's spec, whose deployable is this driver's (the
/// provisioner dispatches on [`Deployable::driver`](crate::model::Deployable::driver)).
/// A launch is recorded (`requesting`) before [`Driver::launch`] is called; the driver moves
/// the instance on through the store and wakes its domain when its state changes.
pub trait Driver: Send + Sync {
    /// The name deployables give for this driver (`"process"`, `"ec2"`).
    fn name(&self) -> &'static str;

    /// Checks that a domain's deployable can be served, before the domain is created.
    fn check<'a>(&'a self, spec: &'a DomainSpec) -> Check<'a>;

    /// Starts what the driver runs for a whole domain (a poller); nothing by default.
    fn attach(&self, _spec: &DomainSpec) {}

    /// Stops what [`Driver::attach`] started.
    fn detach(&self, _domain: &str) {}

    /// Starts the worker of a recorded launch.
    fn launch(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()>;

    /// Destroys an instance (again, if it is terminating already).
    fn destroy(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Result<()>;

    /// How long a destroy may take, at most, before the removal of a domain gives up on it.
    fn stop_within(&self, spec: &DomainSpec) -> Duration;

    /// Ends a zombie: an instance that still reports after it ended. Returns what was done,
    /// for the event, or `None` when nothing was left to end.
    fn end_zombie(&self, inst: &InstanceRecord, spec: &DomainSpec) -> Option<serde_json::Value>;

    /// Re-attaches to the workers of the store after a restart, leaving the instances of
    /// `held` domains (whose stored spec is bad) as they are. Drivers that recover per
    /// domain, in [`Driver::attach`], do nothing here.
    fn recover(&self, _held: &[String]) -> Result<()> {
        Ok(())
    }

    /// Starts what the driver runs in the background for as long as the daemon does.
    fn run_background(&self) {}
}
