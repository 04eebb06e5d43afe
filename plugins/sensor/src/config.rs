//! Parsing and checking the sensor engine's config.

use engine_kit::{
    ignored_key, min_within_max, name, non_negative_int, number, scalar, string_map, unknown_key,
    About, Key, Kind, Vars,
};
use serde_json::Value;

/// How the readings of the metric are reduced to one value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Function {
    Average,
    Max,
    Min,
    Sum,
    Count,
}

impl Function {
    /// Ours (`average`, `max`, `min`, `sum`, `count`, any case) or the original's (`Average`,
    /// `Maximum`, `Minimum`, `Sum`, `SampleCount`).
    fn parse(value: &Value) -> Result<Function, String> {
        let f = match value.as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("average") => Function::Average,
            Some("max" | "maximum") => Function::Max,
            Some("min" | "minimum") => Function::Min,
            Some("sum") => Function::Sum,
            Some("count" | "samplecount") => Function::Count,
            _ => {
                return Err(format!(
                    "sample_function must be one of average, max, min, sum, count \
                     (or Average, Maximum, Minimum, Sum, SampleCount), got {value}"
                ))
            }
        };
        Ok(f)
    }

    /// The function over `values`, which are not empty.
    pub fn apply(self, values: &[f64]) -> f64 {
        let sum: f64 = values.iter().sum();
        match self {
            Function::Average => sum / values.len() as f64,
            Function::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Function::Min => values.iter().copied().fold(f64::MAX, f64::min),
            Function::Sum => sum,
            Function::Count => values.len() as f64,
        }
    }
}

/// The sensor engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub metric: String,
    pub function: Function,
    /// Seconds after a step before the next one.
    pub cooldown: f64,
    pub up_threshold: f64,
    pub up_n: u32,
    pub down_threshold: f64,
    pub down_n: u32,
    pub min: u32,
    /// None: no bound but the domain's.
    pub max: Option<u32>,
    /// Instance ids destroyed first when scaling down.
    pub retirable: Vec<String>,
    pub unique_key: Option<String>,
    pub unique_values: Vec<String>,
    pub provisioner_vars: Vars,
    /// Keys of the original engine given here, which mean nothing to this one.
    pub ignored: Vec<String>,
}

/// The sensor engine's name, summary and config keys.
pub const ABOUT: About = About {
    name: "sensor",
    summary: "steps a pool up or down as a sensor's metric crosses its thresholds",
    keys: &[
        Key::new("metric", Kind::Text, "the sensor reading to follow").required(),
        Key::new(
            "sample_function",
            Kind::Text,
            "how the metric's readings are reduced to one value",
        )
        .choices(&[
            "average",
            "max",
            "min",
            "sum",
            "count",
            "Average",
            "Maximum",
            "Minimum",
            "Sum",
            "SampleCount",
        ])
        .default("\"average\""),
        Key::new(
            "cooldown_period",
            Kind::Number,
            "seconds after a step before the next one",
        )
        .min(0.0)
        .default("0"),
        Key::new(
            "scale_up_threshold",
            Kind::Number,
            "above this value the pool grows",
        )
        .required(),
        Key::count("scale_up_n_vms", "instances one step up adds").default("1"),
        Key::new(
            "scale_down_threshold",
            Kind::Number,
            "below this value the pool shrinks (not above scale_up_threshold)",
        )
        .required(),
        Key::count("scale_down_n_vms", "instances one step down removes").default("1"),
        Key::count("minimum_vms", "the fewest instances kept").default("0"),
        Key::count(
            "maximum_vms",
            "the most instances kept (at least minimum_vms); null: no bound but the domain's",
        )
        .nullable(),
        Key::new(
            "retirable_nodes",
            Kind::Array,
            "instance ids destroyed first when scaling down",
        )
        .default("[]"),
        Key::new(
            "unique_key",
            Kind::Text,
            "the var whose value each instance takes from unique_values",
        )
        .nullable(),
        Key::new(
            "unique_values",
            Kind::Array,
            "the values of unique_key, one instance each",
        )
        .default("[]"),
        Key::new(
            "provisioner_vars",
            Kind::Object,
            "vars (strings) given to every launch",
        )
        .default("{}"),
        Key::new("deployable_type", Kind::Any, PLACEMENT_DOC),
        Key::new("iaas_site", Kind::Any, PLACEMENT_DOC),
        Key::new("iaas_allocation", Kind::Any, PLACEMENT_DOC),
        Key::new("sensor_type", Kind::Any, PLACEMENT_DOC),
    ],
};

/// What the original engine's placement keys mean here.
const PLACEMENT_DOC: &str =
    "ignored, with a warning: the domain's deployable decides where workers run";

/// The original engine's placement keys: the domain's deployable decides where workers run.
const PLACEMENT_KEYS: &[&str] = &[
    "deployable_type",
    "iaas_site",
    "iaas_allocation",
    "sensor_type",
];

impl Config {
    /// Applies the JSON object `text` on top of `base` (None at initialize); each key given
    /// replaces its whole value. The result is checked whole, so a refused change applies
    /// nothing.
    pub fn parse(text: &str, base: Option<&Config>) -> Result<Config, String> {
        let map = engine_kit::object(text)?;
        let mut metric = base.map(|b| b.metric.clone());
        let mut up = base.map(|b| b.up_threshold);
        let mut down = base.map(|b| b.down_threshold);
        let mut c = base.cloned().unwrap_or(Config {
            metric: String::new(),
            function: Function::Average,
            cooldown: 0.0,
            up_threshold: 0.0,
            up_n: 1,
            down_threshold: 0.0,
            down_n: 1,
            min: 0,
            max: None,
            retirable: Vec::new(),
            unique_key: None,
            unique_values: Vec::new(),
            provisioner_vars: Vec::new(),
            ignored: Vec::new(),
        });
        for (key, value) in &map {
            match key.as_str() {
                "metric" => metric = Some(name(key, value)?),
                "sample_function" => c.function = Function::parse(value)?,
                "cooldown_period" => {
                    c.cooldown = number(key, value)?;
                    if c.cooldown < 0.0 {
                        return Err(format!("cooldown_period must be >= 0, got {value}"));
                    }
                }
                "scale_up_threshold" => up = Some(number(key, value)?),
                "scale_up_n_vms" => c.up_n = non_negative_int(key, value)?,
                "scale_down_threshold" => down = Some(number(key, value)?),
                "scale_down_n_vms" => c.down_n = non_negative_int(key, value)?,
                "minimum_vms" => c.min = non_negative_int(key, value)?,
                "maximum_vms" if value.is_null() => c.max = None,
                "maximum_vms" => c.max = Some(non_negative_int(key, value)?),
                "retirable_nodes" => c.retirable = list(key, value)?,
                "unique_key" if value.is_null() => c.unique_key = None,
                "unique_key" => c.unique_key = Some(name(key, value)?),
                "unique_values" => c.unique_values = list(key, value)?,
                "provisioner_vars" => c.provisioner_vars = string_map(key, value)?,
                k if PLACEMENT_KEYS.contains(&k) => {
                    if !c.ignored.iter().any(|i| i == k) {
                        c.ignored.push(k.to_string());
                    }
                }
                other => return Err(unknown_key(other, &ABOUT.names())),
            }
        }
        c.metric = metric.ok_or("metric is required")?;
        c.up_threshold = up.ok_or("scale_up_threshold is required")?;
        c.down_threshold = down.ok_or("scale_down_threshold is required")?;
        if c.down_threshold > c.up_threshold {
            return Err(format!(
                "scale_down_threshold ({}) must not be above scale_up_threshold ({})",
                c.down_threshold, c.up_threshold
            ));
        }
        min_within_max("minimum_vms", c.min, "maximum_vms", c.max)?;
        if !c.unique_values.is_empty() && c.unique_key.is_none() {
            return Err("unique_values needs unique_key, the var that carries the value".into());
        }
        Ok(c)
    }
}

/// A list of scalars, as text.
fn list(key: &str, value: &Value) -> Result<Vec<String>, String> {
    value
        .as_array()
        .ok_or_else(|| format!("{key} must be a list, got {value}"))?
        .iter()
        .map(|v| scalar(key, v))
        .collect()
}

impl engine_kit::EngineConfig for Config {
    const ABOUT: About = ABOUT;

    fn from_text(text: &str, current: Option<&Self>) -> Result<Self, String> {
        Config::parse(text, current)
    }

    fn warnings(&self) -> Vec<String> {
        self.ignored
            .iter()
            .map(|k| ignored_key(k, "the domain's deployable decides where workers run"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""metric": "cpu", "scale_up_threshold": 0.8, "scale_down_threshold": 0.2"#;

    fn parse(extra: &str) -> Result<Config, String> {
        let sep = if extra.is_empty() { "" } else { ", " };
        Config::parse(&format!("{{{BASE}{sep}{extra}}}"), None)
    }

    #[test]
    fn defaults_are_the_original_s_where_they_make_sense() {
        let c = parse("").unwrap();
        assert_eq!(c.cooldown, 0.0, "the original's cooldown default");
        assert_eq!((c.up_n, c.down_n, c.min, c.max), (1, 1, 0, None));
        assert_eq!(c.function, Function::Average);
    }

    #[test]
    fn both_names_of_each_function_are_accepted() {
        for (given, want) in [
            ("Average", Function::Average),
            ("Maximum", Function::Max),
            ("min", Function::Min),
            ("SampleCount", Function::Count),
            ("sum", Function::Sum),
        ] {
            let c = parse(&format!(r#""sample_function": "{given}""#)).unwrap();
            assert_eq!(c.function, want);
        }
        assert!(parse(r#""sample_function": "Series""#).is_err());
    }

    #[test]
    fn refusals_name_the_key() {
        for (extra, says) in [
            (
                r#""scale_down_n_vms": -1"#,
                "scale_down_n_vms must be a whole number",
            ),
            (
                r#""scale_up_n_vms": "2.7""#,
                "scale_up_n_vms must be a whole number",
            ),
            (
                r#""minimum_vms": 3, "maximum_vms": 2"#,
                "must not be above maximum_vms",
            ),
            (
                r#""scale_down_threshold": 0.9"#,
                "must not be above scale_up_threshold",
            ),
            (r#""cooldown_period": -5"#, "cooldown_period must be >= 0"),
            (r#""unique_values": [1]"#, "needs unique_key"),
            (
                r#""retirable_nodes": "i-1""#,
                "retirable_nodes must be a list",
            ),
            (r#""bogus": 1"#, "unknown key 'bogus'"),
        ] {
            let err = parse(extra).unwrap_err();
            assert!(err.contains(says), "{extra}: {err}");
        }
        let err = Config::parse(
            r#"{"scale_up_threshold": 1, "scale_down_threshold": 0}"#,
            None,
        );
        assert!(err.unwrap_err().contains("metric is required"));
    }

    #[test]
    fn reconfigure_replaces_keys_and_is_checked_whole() {
        let c = parse(r#""retirable_nodes": ["a", "b"], "maximum_vms": 4"#).unwrap();
        let d = Config::parse(
            r#"{"retirable_nodes": ["c"], "maximum_vms": null}"#,
            Some(&c),
        )
        .unwrap();
        assert_eq!((d.retirable, d.max), (vec!["c".to_string()], None));
        assert!(Config::parse(r#"{"minimum_vms": 9}"#, Some(&c)).is_err());
        let v = parse(r#""unique_key": "slot", "unique_values": [1, "b"]"#).unwrap();
        assert_eq!(v.unique_values, ["1", "b"]);
    }

    #[test]
    fn the_original_placement_keys_are_accepted_with_a_warning() {
        use engine_kit::EngineConfig;
        let c = parse(r#""deployable_type": "dt1", "iaas_site": "chicago""#).unwrap();
        assert_eq!(c.warnings().len(), 2);
    }
}
