//! Parsing and checking npreserving's config.

use engine_kit::{boolean, non_negative_int, string_map};

/// npreserving's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub preserve_n: u32,
    /// Whether `preserve_n` was given at all (an unset N keeps 0 instances, with a warning).
    pub preserve_n_set: bool,
    pub devmode: bool,
    pub provisioner_vars: Vec<(String, String)>,
}

const KEYS: &[&str] = &[
    "preserve_n",
    "devmode_no_failure_compensation",
    "provisioner_vars",
];

impl Config {
    /// Applies the JSON object `text` on top of `base`. Every key is checked before any applies,
    /// so a rejected change leaves nothing half-applied.
    pub fn parse(text: &str, base: &Config) -> Result<Config, String> {
        let map = engine_kit::object(text)?;
        let mut config = base.clone();
        for (key, value) in &map {
            match key.as_str() {
                "preserve_n" => {
                    config.preserve_n = non_negative_int(key, value)?;
                    config.preserve_n_set = true;
                }
                "devmode_no_failure_compensation" => config.devmode = boolean(key, value)?,
                "provisioner_vars" => config.provisioner_vars = string_map(key, value)?,
                other => return Err(engine_kit::unknown_key(other, KEYS)),
            }
        }
        Ok(config)
    }
}

impl engine_kit::EngineConfig for Config {
    fn from_text(text: &str, current: Option<&Self>) -> Result<Self, String> {
        Config::parse(text, current.unwrap_or(&Config::default()))
    }

    fn warnings(&self) -> Vec<String> {
        match self.preserve_n_set {
            true => vec![],
            false => vec!["preserve_n is not set: keeping 0 instances".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, &Config::default())
    }

    #[test]
    fn numbers_and_numeric_strings_are_accepted() {
        assert_eq!(parse(r#"{"preserve_n": 3}"#).unwrap().preserve_n, 3);
        assert_eq!(parse(r#"{"preserve_n": "7"}"#).unwrap().preserve_n, 7);
    }

    #[test]
    fn wrong_types_are_rejected_with_the_key_named() {
        for bad in [r#""abc""#, "2.7", r#""2.7""#, "-1", "true", "null", "[]"] {
            let err = parse(&format!(r#"{{"preserve_n": {bad}}}"#)).unwrap_err();
            assert!(
                err.contains("preserve_n must be a whole number"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn devmode_takes_booleans_and_their_strings_only() {
        assert!(
            parse(r#"{"devmode_no_failure_compensation": true}"#)
                .unwrap()
                .devmode
        );
        assert!(
            parse(r#"{"devmode_no_failure_compensation": "true"}"#)
                .unwrap()
                .devmode
        );
        assert!(
            !parse(r#"{"devmode_no_failure_compensation": "false"}"#)
                .unwrap()
                .devmode
        );
        assert!(parse(r#"{"devmode_no_failure_compensation": "yes"}"#).is_err());
    }

    #[test]
    fn unknown_keys_and_non_objects_are_rejected() {
        assert!(parse(r#"{"preserve-n": 3}"#)
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse("[1]").unwrap_err().contains("JSON object"));
        assert!(parse("{").unwrap_err().contains("not valid JSON"));
    }

    #[test]
    fn unset_n_is_zero_and_flagged() {
        let c = parse("{}").unwrap();
        assert_eq!(c.preserve_n, 0);
        assert!(!c.preserve_n_set);
    }
}
