//! Parsing and checking queuelen's config.

use engine_kit::{name, non_negative_int, string_map, unknown_key, About, Key, Kind};

/// queuelen's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Above this queue length the pool grows.
    pub high_water: u32,
    /// Below this queue length the pool shrinks.
    pub low_water: u32,
    pub min_instances: u32,
    pub max_instances: Option<u32>,
    /// How many instances one decide may add or remove.
    pub scale_step: u32,
    /// The name of the sensor whose reading is the queue length.
    pub sensor: String,
    pub provisioner_vars: Vec<(String, String)>,
}

/// queuelen's name, summary and config keys.
pub const ABOUT: About = About {
    name: "queuelen",
    summary: "scales a worker pool on the length of its message queue",
    keys: &[
        Key::count(
            "queuelen_high_water",
            "above this queue length the pool grows (above queuelen_low_water)",
        )
        .required(),
        Key::count(
            "queuelen_low_water",
            "below this queue length the pool shrinks",
        )
        .required(),
        Key::count("min_instances", "the fewest instances kept").default("0"),
        Key::count(
            "max_instances",
            "the most instances kept (at least min_instances); null: no bound but the domain's",
        )
        .nullable(),
        Key::count("scale_step", "instances one step adds or removes")
            .min(1.0)
            .default("1"),
        Key::new(
            "sensor",
            Kind::Text,
            "the sensor whose reading is the queue length",
        )
        .default("\"queue-length\""),
        Key::new(
            "provisioner_vars",
            Kind::Object,
            "vars (strings) given to every launch",
        )
        .default("{}"),
    ],
};

impl Config {
    /// Applies the JSON object `text` on top of `base` (None at initialize, when both water
    /// marks are required). The result is checked whole, so a rejected change applies nothing.
    pub fn parse(text: &str, base: Option<&Config>) -> Result<Config, String> {
        let map = engine_kit::object(text)?;
        let mut high = base.map(|b| b.high_water);
        let mut low = base.map(|b| b.low_water);
        let mut c = base.cloned().unwrap_or(Config {
            high_water: 0,
            low_water: 0,
            min_instances: 0,
            max_instances: None,
            scale_step: 1,
            sensor: "queue-length".into(),
            provisioner_vars: Vec::new(),
        });
        for (key, value) in &map {
            match key.as_str() {
                "queuelen_high_water" => high = Some(non_negative_int(key, value)?),
                "queuelen_low_water" => low = Some(non_negative_int(key, value)?),
                "min_instances" => c.min_instances = non_negative_int(key, value)?,
                "max_instances" if value.is_null() => c.max_instances = None,
                "max_instances" => c.max_instances = Some(non_negative_int(key, value)?),
                "scale_step" => c.scale_step = non_negative_int(key, value)?,
                "sensor" => c.sensor = name(key, value)?,
                "provisioner_vars" => c.provisioner_vars = string_map(key, value)?,
                other => return Err(unknown_key(other, &ABOUT.names())),
            }
        }
        c.high_water = high.ok_or("queuelen_high_water is required")?;
        c.low_water = low.ok_or("queuelen_low_water is required")?;
        if c.high_water <= c.low_water {
            return Err(format!(
                "queuelen_high_water ({}) must be above queuelen_low_water ({})",
                c.high_water, c.low_water
            ));
        }
        engine_kit::min_within_max(
            "min_instances",
            c.min_instances,
            "max_instances",
            c.max_instances,
        )?;
        if c.scale_step == 0 {
            return Err("scale_step must be at least 1".into());
        }
        Ok(c)
    }
}

impl engine_kit::EngineConfig for Config {
    const ABOUT: About = ABOUT;

    fn from_text(text: &str, current: Option<&Self>) -> Result<Self, String> {
        Config::parse(text, current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"queuelen_high_water": 10, "queuelen_low_water": 2}"#;

    fn initial() -> Config {
        Config::parse(BASE, None).unwrap()
    }

    #[test]
    fn defaults_and_numeric_strings() {
        let c = initial();
        assert_eq!((c.high_water, c.low_water), (10, 2));
        assert_eq!(
            (c.min_instances, c.max_instances, c.scale_step),
            (0, None, 1)
        );
        assert_eq!(c.sensor, "queue-length");
        let c = Config::parse(
            r#"{"queuelen_high_water": "20", "queuelen_low_water": "5", "min_instances": "1",
                "max_instances": 8, "scale_step": 2, "sensor": "backlog"}"#,
            None,
        )
        .unwrap();
        assert_eq!((c.high_water, c.low_water, c.min_instances), (20, 5, 1));
        assert_eq!((c.max_instances, c.scale_step), (Some(8), 2));
        assert_eq!(c.sensor, "backlog");
    }

    #[test]
    fn both_water_marks_are_required_at_initialize() {
        let err = Config::parse(r#"{"queuelen_low_water": 2}"#, None).unwrap_err();
        assert!(err.contains("queuelen_high_water is required"), "{err}");
        let err = Config::parse(r#"{"queuelen_high_water": 2}"#, None).unwrap_err();
        assert!(err.contains("queuelen_low_water is required"), "{err}");
    }

    #[test]
    fn bad_values_are_rejected_with_the_key_named() {
        let cases = [
            (
                r#"{"queuelen_high_water": 2, "queuelen_low_water": 2}"#,
                "must be above",
            ),
            (
                r#"{"queuelen_high_water": 1, "queuelen_low_water": 5}"#,
                "must be above",
            ),
            (
                r#"{"queuelen_high_water": "2.7", "queuelen_low_water": 1}"#,
                "queuelen_high_water must be a whole number",
            ),
            (
                r#"{"queuelen_high_water": 9, "queuelen_low_water": -1}"#,
                "queuelen_low_water must be a whole number",
            ),
            (
                &BASE.replace('}', r#", "min_instances": 5, "max_instances": 3}"#),
                "must not be above",
            ),
            (&BASE.replace('}', r#", "scale_step": 0}"#), "scale_step"),
            (&BASE.replace('}', r#", "sensor": 3}"#), "sensor must be"),
            (&BASE.replace('}', r#", "high_water": 3}"#), "unknown key"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(text, None).unwrap_err();
            assert!(err.contains(needle), "{text}: expected '{needle}' in {err}");
        }
    }

    #[test]
    fn reconfigure_changes_some_keys_and_checks_the_whole() {
        let c = Config::parse(r#"{"min_instances": 2}"#, Some(&initial())).unwrap();
        assert_eq!((c.high_water, c.min_instances), (10, 2));
        let err = Config::parse(r#"{"queuelen_low_water": 10}"#, Some(&initial())).unwrap_err();
        assert!(err.contains("must be above"), "{err}");
        let c = Config::parse(r#"{"max_instances": 4}"#, Some(&initial())).unwrap();
        let c = Config::parse(r#"{"max_instances": null}"#, Some(&c)).unwrap();
        assert_eq!(c.max_instances, None);
    }
}
