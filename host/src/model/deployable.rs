//! Deployables: what a launch starts, for each provisioner driver.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a launch starts for the `process` driver: a command with its args, env and working dir.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessDeployable {
    /// The program and its arguments.
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The working directory; the daemon's own when unset.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when an instance is destroyed.
    #[serde(default = "default_grace")]
    pub grace_seconds: f64,
    /// The daemon's env vars a worker gets (when the daemon has them). A worker gets nothing
    /// else of the daemon's environment: only these, the `EPU_*` vars and `env`.
    #[serde(default = "default_inherit_env")]
    pub inherit_env: Vec<String>,
}

/// The daemon's env vars a worker gets unless its deployable names others.
pub fn default_inherit_env() -> Vec<String> {
    [
        "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME",
    ]
    .map(String::from)
    .to_vec()
}

/// The default seconds between SIGTERM and SIGKILL.
pub fn default_grace() -> f64 {
    5.0
}

/// What a launch starts for the `ec2` driver: an instance on an EC2-compatible cloud (AWS, or
/// any endpoint that speaks the EC2 API). Credentials come from the standard AWS chain (env,
/// profile), never from here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ec2Deployable {
    pub region: String,
    /// The API endpoint, for a cloud other than AWS (or a local one); AWS's own when unset.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    pub image_id: String,
    pub instance_type: String,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The instance's user data. `{{node_id}}`, `{{domain}}`, `{{heartbeat_url}}` and
    /// `{{token}}` are replaced; the default is a JSON object with those four keys.
    #[serde(default = "default_user_data")]
    pub user_data: String,
    /// Where the instance's worker sends heartbeats; default: the daemon's TCP listener.
    #[serde(default)]
    pub heartbeat_url: Option<String>,
    /// Milliseconds between `DescribeInstances` polls.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Seconds after its launch that an instance the cloud does not list becomes failed.
    #[serde(default = "default_missing_after")]
    pub missing_after_s: f64,
    /// Seconds a tagged instance that the store does not know may live before it is reaped.
    #[serde(default = "default_reap_after")]
    pub reap_after_s: f64,
    /// Tries of one cloud call before its failure is an event and the instance's launch
    /// or destroy is retried later.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Milliseconds one cloud call may take.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_ms: u64,
}

fn default_user_data() -> String {
    r#"{"node_id":"{{node_id}}","domain":"{{domain}}","heartbeat_url":"{{heartbeat_url}}","token":"{{token}}"}"#
        .into()
}

fn default_poll_ms() -> u64 {
    2000
}

fn default_missing_after() -> f64 {
    60.0
}

fn default_reap_after() -> f64 {
    30.0
}

fn default_attempts() -> u32 {
    6
}

fn default_call_timeout() -> u64 {
    10_000
}

/// A domain's deployable, by driver. Stored and sent as the driver's object with a
/// `"driver"` key; an object without one is a process deployable (as stores before the `ec2`
/// driver hold).
#[derive(Clone, Debug, PartialEq)]
pub enum Deployable {
    Process(ProcessDeployable),
    Ec2(Ec2Deployable),
}

impl Deployable {
    /// The driver's name.
    pub fn driver(&self) -> &'static str {
        match self {
            Deployable::Process(_) => "process",
            Deployable::Ec2(_) => "ec2",
        }
    }

    /// The `process` deployable, if it is one.
    pub fn as_process(&self) -> Option<&ProcessDeployable> {
        match self {
            Deployable::Process(p) => Some(p),
            _ => None,
        }
    }

    /// The `ec2` deployable, if it is one.
    pub fn as_ec2(&self) -> Option<&Ec2Deployable> {
        match self {
            Deployable::Ec2(e) => Some(e),
            _ => None,
        }
    }
}

impl Serialize for Deployable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = match self {
            Deployable::Process(p) => serde_json::to_value(p),
            Deployable::Ec2(e) => serde_json::to_value(e),
        }
        .map_err(serde::ser::Error::custom)?;
        v["driver"] = self.driver().into();
        v.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Deployable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut v = Value::deserialize(d)?;
        let driver = match v.as_object_mut().and_then(|m| m.remove("driver")) {
            None => "process".to_string(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(D::Error::custom(format!("driver: {other} is not a name"))),
        };
        match driver.as_str() {
            "process" => serde_json::from_value(v).map(Deployable::Process),
            "ec2" => serde_json::from_value(v).map(Deployable::Ec2),
            other => {
                return Err(D::Error::custom(format!(
                    "unknown driver '{other}' (drivers: process, ec2)"
                )))
            }
        }
        .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_deployable_without_a_driver_is_a_process_and_both_round_trip() {
        let old = json!({"command": ["/bin/true"], "env": {}, "cwd": null, "grace_seconds": 2.0});
        let d: Deployable = serde_json::from_value(old).unwrap();
        assert!(matches!(&d, Deployable::Process(p) if p.grace_seconds == 2.0));
        let again: Deployable = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(again, d);
        let ec2 = json!({"driver": "ec2", "region": "us-east-1", "image_id": "ami-1", "instance_type": "t3.micro"});
        let e: Deployable = serde_json::from_value(ec2).unwrap();
        let Deployable::Ec2(e2) = &e else {
            panic!("not ec2")
        };
        assert_eq!(e2.poll_ms, 2000);
        assert!(e2.user_data.contains("{{token}}"));
        let err = serde_json::from_value::<Deployable>(json!({"driver": "gce"})).unwrap_err();
        assert!(err.to_string().contains("unknown driver 'gce'"), "{err}");
        let err = serde_json::from_value::<Deployable>(json!({"driver": "ec2", "region": "x"}))
            .unwrap_err();
        assert!(err.to_string().contains("image_id"), "{err}");
    }
}
