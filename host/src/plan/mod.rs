//! Launch plans: a directory under `launch-plans/` with a `plan.toml`. A plan has ordered
//! bootlevels of services (started in parallel within a level, each level ready before the next
//! starts) and the domains that are created once the last level is ready. Services publish
//! attributes that later services and domains use as `${service.attr}`.
//!
//! A plan is checked whole (syntax, unknown keys, types, files, references and their order)
//! before anything starts; an error names the file, the line and the key. `spec` is what a
//! plan says, `load` checks it, and `services` holds the checks of its services.

mod load;
mod services;
mod spec;
pub mod template;

pub use load::{check_name, load};
pub use spec::{Plan, Readiness, ServiceSpec};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sensor::SensorSpec;
    use crate::model::{Deployable, EngineLimits, DEFAULT_MAX_INSTANCES};
    use std::path::{Path, PathBuf};

    fn write(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("plan.toml");
        std::fs::write(&f, text).unwrap();
        std::fs::write(dir.join("w.sh"), "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let exec = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(dir.join("w.sh"), exec).unwrap();
        f
    }

    const GOOD: &str = r#"
name = "p"
[[domain]]
name = "workers"
engine = "npreserving"
config = { preserve_n = 2 }
process = { command = ["./w.sh", "x"] }
"#;

    #[test]
    fn a_good_plan_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let plan = load(dir.path()).unwrap();
        let d = &plan.domains[0];
        assert_eq!(d.config["preserve_n"], 2);
        let Deployable::Process(p) = &d.deployable else {
            panic!("not a process deployable");
        };
        assert!(p.command[0].starts_with('/'));
        assert!(p.command[0].ends_with("/w.sh"));
        assert_eq!(d.run.as_deref(), Some("p"));
        assert_eq!(d.max_instances, DEFAULT_MAX_INSTANCES);
    }

    #[test]
    fn limits_are_read_from_the_plan_with_defaults_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{GOOD}[domain.limits]\ntimeout_ms = 20\nfallback = \"preserve\"\n");
        write(dir.path(), &text);
        let limits = &load(dir.path()).unwrap().domains[0].limits;
        assert_eq!(limits.timeout_ms, 20);
        assert_eq!(limits.fallback, crate::model::Fallback::Preserve);
        assert_eq!(limits.memory_mib, EngineLimits::default().memory_mib);
        write(
            dir.path(),
            &format!("{GOOD}[domain.limits]\nfallback = \"retry\"\n"),
        );
        let err = format!("{:#}", load(dir.path()).unwrap_err());
        assert!(err.contains("fallback") || err.contains("retry"), "{err}");
    }

    #[test]
    fn sensors_are_read_with_command_paths_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{GOOD}[[domain.sensor]]\nkind = \"amqp\"\nname = \"queue-length\"\n\
             url = \"amqp://127.0.0.1:5672/%2f\"\nqueue = \"work\"\ninterval_ms = 500\n\
             [[domain.sensor]]\nkind = \"command\"\nname = \"depth\"\ncommand = [\"./w.sh\"]\n"
        );
        write(dir.path(), &text);
        let sensors = &load(dir.path()).unwrap().domains[0].sensors;
        assert_eq!(sensors.len(), 2);
        assert_eq!(sensors[0].name(), "queue-length");
        let SensorSpec::Command { command, cwd, .. } = &sensors[1] else {
            panic!("not a command sensor: {:?}", sensors[1]);
        };
        assert!(command[0].starts_with('/') && command[0].ends_with("/w.sh"));
        assert!(cwd.is_some());
    }

    #[test]
    fn a_plan_booted_again_adds_only_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), GOOD);
        let plan = load(dir.path()).unwrap();
        assert_eq!(plan.domains_to_add("p", &[]).unwrap().len(), 1);
        let mine = [("workers".to_string(), Some("p".to_string()))];
        assert!(plan.domains_to_add("p", &mine).unwrap().is_empty());
        let foreign = [("workers".to_string(), None)];
        let err = plan.domains_to_add("p", &foreign).unwrap_err().to_string();
        assert!(err.contains("does not belong to run 'p'"), "{err}");
    }

    #[test]
    fn bad_plans_are_rejected_with_the_file_and_the_key() {
        let cases = [
            ("name = \"p\"\n[[domain]\n", "plan.toml"),
            (
                &GOOD.replace("engine = \"npreserving\"", "engine = \"nope.wasm\""),
                "nope.wasm",
            ),
            (&GOOD.replace("./w.sh", "./missing.sh"), "missing.sh"),
            (
                &GOOD.replace("name = \"workers\"", "name = \"workers\"\nbogus = 1"),
                "bogus",
            ),
            (
                &GOOD.replace("[[domain]]", "[[domain]]\nmax_instances = \"ten\""),
                "max_instances",
            ),
            ("name = \"p\"\n", "no [[level]] and no [[domain]]"),
            (
                &format!("{GOOD}[[domain.sensor]]\nkind = \"amqp\"\nname = \"q\"\nurl = \"http://x\"\nqueue = \"w\"\n"),
                "bad AMQP url",
            ),
            (
                &format!("{GOOD}[[domain.sensor]]\nkind = \"command\"\nname = \"c\"\ncommand = [\"./nope.sh\"]\n"),
                "nope.sh",
            ),
        ];
        for (text, needle) in cases {
            let dir = tempfile::tempdir().unwrap();
            write(dir.path(), text);
            let err = format!("{:#}", load(dir.path()).unwrap_err());
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
            assert!(err.contains("plan.toml"), "no file named in: {err}");
        }
    }
}
