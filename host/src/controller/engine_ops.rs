//! Calls into the domain's engine, on the controller's decide thread: decide's engine half,
//! reconfigure, and the validated hot swap.

use super::faults::{Fault, FaultKind};
use super::trial::trial_decide;
use super::{CommandError, Controller, LiveEngine};
use crate::contract::snapshot;
use crate::engine::bindings::LogLevel;
use crate::engine::{CallLimits, EngineError, EngineInstance, LoadedEngine};
use serde_json::{json, Map, Value};
use std::sync::Arc;

impl Controller {
    /// Runs `f` on the engine instance, making the instance first if there is none. The
    /// instance is kept unless the call trapped.
    pub(super) fn with_engine<T>(
        &mut self,
        f: impl FnOnce(&mut EngineInstance) -> Result<T, EngineError>,
    ) -> Result<T, Fault> {
        let mut live = match self.instance.take() {
            Some(live) => live,
            None => {
                let config = Value::Object(self.spec.config.clone()).to_string();
                let limits = CallLimits::from(&self.spec.limits);
                match self
                    .services
                    .engines
                    .instantiate(&self.loaded, &config, limits)
                {
                    Ok(i) => LiveEngine::fresh(i),
                    Err(e) => return Err(Fault::new(FaultKind::Init, e.to_string())),
                }
            }
        };
        let result = f(&mut live.instance);
        let logs = live.instance.take_logs();
        if !matches!(result, Err(EngineError::Trap(..))) {
            self.instance = Some(live);
        }
        self.record_logs(logs);
        result.map_err(Fault::from_call)
    }

    fn record_logs(&mut self, (lines, dropped_in_call): (Vec<(LogLevel, String)>, usize)) {
        if let Some(dropped) = self.log_budget.roll(std::time::Instant::now()) {
            let message = format!("{dropped} engine log lines dropped by the rate limit");
            self.engine_event("engine-log", json!({"level": "warn", "message": message}));
        }
        for (level, message) in lines {
            if self.log_budget.take(1) {
                let level = format!("{level:?}").to_lowercase();
                self.engine_event("engine-log", json!({"level": level, "message": message}));
            }
        }
        if dropped_in_call > 0 && self.log_budget.take(dropped_in_call as u64) {
            let message = format!("{dropped_in_call} more log lines of one call dropped");
            self.engine_event("engine-log", json!({"level": "warn", "message": message}));
        }
    }

    /// Applies a config change. The merged config first goes to a trial instance that makes
    /// a trial decide on the live snapshot, as a swap's canary does: a config the engine
    /// refuses, or whose decision the daemon would refuse, is refused before anything is
    /// stored. Then the live instance gets the change.
    pub(super) fn reconfigure(&mut self, change: Map<String, Value>) -> Result<i64, CommandError> {
        let text = Value::Object(change.clone()).to_string();
        let mut merged = self.spec.config.clone();
        merged.extend(change.clone());
        if let Err(why) = self.canary(&self.loaded.clone(), &merged) {
            self.event(
                "reconfigure-rejected",
                json!({"change": change, "error": why}),
            );
            return Err(CommandError::Refused(why));
        }
        let result = if self.instance.is_some() {
            self.with_engine(move |e| e.reconfigure(&text))
        } else {
            // A fresh instance initialized with the merged config is the check.
            let old = std::mem::replace(&mut self.spec.config, merged.clone());
            let r = self.with_engine(|_| Ok(()));
            self.spec.config = old;
            r
        };
        if let Err(fault) = result {
            // The engine may have applied part of the change: start over from the old config.
            self.instance = None;
            self.event(
                "reconfigure-rejected",
                json!({"change": change, "error": fault.message}),
            );
            return Err(CommandError::Refused(fault.message));
        }
        let version = self
            .services
            .store
            .save_config(&self.spec.name, &merged, &change)
            .map_err(|e| {
                self.instance = None;
                CommandError::Store(format!("storing the config: {e:#}"))
            })?;
        self.spec.config = merged;
        self.restart_recording();
        self.services.wakeups.wake(&self.spec.name);
        Ok(version)
    }

    /// Hot swap. The new engine is instantiated and initialized with `config` (a new config
    /// for the domain, as an engine of another kind needs) or else the current one, then makes
    /// a canary decide on the live snapshot (its result is checked and discarded). Only then
    /// does it replace the old engine, between two decides, with its config stored in the same
    /// transaction; the memo carries over and a quarantine is lifted. On any failure the old
    /// engine runs on untouched, with its config.
    pub(super) fn swap(
        &mut self,
        loaded: Arc<LoadedEngine>,
        name: String,
        new_config: Option<Map<String, Value>>,
    ) -> Result<i64, CommandError> {
        let refuse = |me: &Self, why: CommandError| {
            me.event(
                "swap-rejected",
                json!({"engine": name, "sha": loaded.sha, "error": why.to_string()}),
            );
            Err(why)
        };
        let config = new_config.as_ref().unwrap_or(&self.spec.config).clone();
        let new_instance = match self.canary(&loaded, &config) {
            Ok(i) => i,
            // Another engine keeps the current config unless it is given its own.
            Err(why) if new_config.is_none() && name != self.spec.engine => {
                let why = format!(
                    "{why}\n'{name}' was given the domain's config for '{}'; an engine of \
                     another kind needs its own: `epu engine swap {} {name} -c KEY=VALUE …`",
                    self.spec.engine, self.spec.name
                );
                return refuse(self, CommandError::Refused(why));
            }
            Err(why) => return refuse(self, CommandError::Refused(why)),
        };
        if let Err(e) = self.services.engines.keep(&loaded) {
            let why = format!("keeping the engine in the state dir: {e:#}");
            return refuse(self, CommandError::Store(why));
        }
        let detail = json!({"from": {"engine": self.spec.engine, "sha": self.loaded.sha}, "to": {"engine": name, "sha": loaded.sha}});
        let version = match self.services.store.set_engine(
            &self.spec.name,
            &name,
            &loaded.sha,
            new_config.as_ref(),
            &detail,
        ) {
            Ok(v) => v,
            Err(e) => {
                return refuse(
                    self,
                    CommandError::Store(format!("storing the swap: {e:#}")),
                )
            }
        };
        if let Some(old) = self.instance.replace(LiveEngine::fresh(new_instance)) {
            old.instance.dying();
        }
        self.services
            .metrics
            .swaps
            .with_label_values(&[self.spec.name.as_str()])
            .inc();
        self.loaded = loaded;
        self.spec.engine = name;
        if let Some(config) = new_config {
            self.spec.config = config;
        }
        self.restart_recording();
        self.quarantined = false;
        self.preserve_target = None;
        {
            let mut st = self.status.lock().unwrap();
            st.quarantined = false;
            st.consecutive_faults = 0;
            st.last_fault = None;
        }
        self.services.wakeups.wake(&self.spec.name);
        Ok(version)
    }

    /// A fresh instance of `loaded` initialized with `config`, once it has made a canary
    /// decide on the live snapshot that the daemon would accept. The canary's decision is
    /// not carried out, so the instance stays fresh: its first real decide gets a full
    /// snapshot too.
    fn canary(
        &mut self,
        loaded: &Arc<LoadedEngine>,
        config: &Map<String, Value>,
    ) -> Result<EngineInstance, String> {
        let read = self
            .read()
            .map_err(|e| format!("reading the store: {e:#}"))?;
        let now = crate::model::now();
        let (snap, _) = snapshot::build(&read, &self.readings(now).sensors, None, now);
        let config = Value::Object(config.clone()).to_string();
        let limits = CallLimits::from(&self.spec.limits);
        let mut inst = self
            .services
            .engines
            .instantiate(loaded, &config, limits)
            .map_err(|e| format!("initialize failed: {e}"))?;
        trial_decide(
            &mut inst,
            &snap,
            &read.live,
            self.spec.max_instances,
            &self.spec.limits,
        )
        .map_err(|e| e.to_string())?;
        Ok(inst)
    }

    /// After a change of engine or config, what was recorded no longer replays: start anew
    /// from the next snapshot, which is made full.
    fn restart_recording(&mut self) {
        self.recording = Default::default();
        if let Some(instance) = self.instance.as_mut() {
            instance.synced = None;
        }
    }
}
