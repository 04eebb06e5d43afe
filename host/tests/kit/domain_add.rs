//! `epu domain add`, built up from the defaults a test changes.

use super::Epu;
use std::process::Output;

impl Epu {
    /// `epu domain add NAME`, to build up: the engine is npreserving and the workers
    /// `/bin/sleep 1000` unless set.
    pub fn add_domain(&self, name: &str) -> DomainAdd<'_> {
        DomainAdd {
            epu: self,
            name: name.to_string(),
            engine: "npreserving".into(),
            options: Vec::new(),
            command: vec!["/bin/sleep".into(), "1000".into()],
        }
    }
}

/// `epu domain add`, built up; see [`Epu::add_domain`].
pub struct DomainAdd<'a> {
    epu: &'a Epu,
    name: String,
    engine: String,
    options: Vec<String>,
    command: Vec<String>,
}

impl DomainAdd<'_> {
    /// A bundled engine's name or a `.wasm` path.
    pub fn engine(mut self, engine: impl AsRef<std::ffi::OsStr>) -> Self {
        self.engine = engine.as_ref().to_string_lossy().into_owned();
        self
    }

    /// One `-c KEY=VALUE`.
    pub fn config(self, setting: &str) -> Self {
        self.flag("-c", setting)
    }

    /// An option and its value, such as `--pulse-ms 100`.
    pub fn flag(mut self, option: &str, value: &str) -> Self {
        self.options.extend([option.to_string(), value.to_string()]);
        self
    }

    /// Options as given, such as `["--pulse-ms", "100", "-c", "mode=trap"]`.
    pub fn options(mut self, options: &[&str]) -> Self {
        self.options.extend(options.iter().map(|o| o.to_string()));
        self
    }

    /// An option without a value, such as `--dry-run`.
    pub fn switch(mut self, option: &str) -> Self {
        self.options.push(option.to_string());
        self
    }

    /// The worker's program and arguments.
    pub fn command<S: AsRef<std::ffi::OsStr>>(mut self, argv: &[S]) -> Self {
        self.command = argv
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        self
    }

    /// The command line, after `epu`.
    pub fn args(&self) -> Vec<String> {
        let mut args = vec!["domain".to_string(), "add".into(), self.name.clone()];
        args.extend(["--engine".to_string(), self.engine.clone()]);
        args.extend(self.options.iter().cloned());
        args.push("--".into());
        args.extend(self.command.iter().cloned());
        args
    }

    /// Starts it, without waiting for it.
    pub fn spawn(&self) -> std::process::Child {
        self.epu.command().args(self.args()).spawn().unwrap()
    }

    /// Runs it; its output.
    pub fn run(&self) -> Output {
        let args = self.args();
        self.epu
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs it and asserts it succeeds; its stdout.
    pub fn ok(&self) -> String {
        let args = self.args();
        self.epu
            .ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs it and asserts it fails; its stderr.
    pub fn fails(&self) -> String {
        let args = self.args();
        self.epu
            .fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}
