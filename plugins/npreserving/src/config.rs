//! Parsing and checking npreserving's config.

pub use engine_kit::Vars;
use engine_kit::{
    boolean, ignored_key, non_negative_int, scalar_map, string_map, About, Key, Kind,
};

/// npreserving's settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub preserve_n: u32,
    /// Whether `preserve_n` was given at all (an unset N keeps 0 instances, with a warning).
    pub preserve_n_set: bool,
    pub devmode: bool,
    pub provisioner_vars: Vars,
    /// Each unique's key and its own vars, by key.
    pub uniques: Vec<(String, Vars)>,
    /// Keys of the original engine given here, which mean nothing to this one.
    pub ignored: Vec<String>,
}

/// npreserving's name, summary and config keys.
pub const ABOUT: About = About {
    name: "npreserving",
    summary: "keeps N healthy instances, some of them uniques with their own vars",
    keys: &[
        Key::count(
            "preserve_n",
            "the number of healthy instances to keep, uniques included",
        )
        .default("0"),
        Key::new(
            "devmode_no_failure_compensation",
            Kind::Boolean,
            "leave failed instances in place and never replace them",
        )
        .default("false"),
        Key::new(
            "provisioner_vars",
            Kind::Object,
            "vars (strings) given to every launch",
        )
        .default("{}"),
        Key::new(
            "unique_instances",
            Kind::Object,
            "uniques by key, each an object of its own vars; at most preserve_n",
        )
        .default("{}"),
        Key::new("force_site", Kind::Any, PLACEMENT_DOC),
        Key::new("epuworker_type", Kind::Any, PLACEMENT_DOC),
        Key::new("epuworker_allocation", Kind::Any, PLACEMENT_DOC),
    ],
};

/// What the original engine's placement keys mean here.
const PLACEMENT_DOC: &str =
    "ignored, with a warning: the domain's deployable decides where workers run";

/// The original engine's placement keys: the domain's deployable decides where workers run.
const PLACEMENT_KEYS: &[&str] = &["force_site", "epuworker_type", "epuworker_allocation"];

impl Config {
    /// Applies the JSON object `text` on top of `base`; each key given replaces its whole value.
    /// The result is checked whole, so a rejected change leaves nothing half-applied.
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
                "unique_instances" => config.uniques = uniques(value)?,
                k if PLACEMENT_KEYS.contains(&k) => {
                    if !config.ignored.iter().any(|i| i == k) {
                        config.ignored.push(k.to_string());
                    }
                }
                other => return Err(engine_kit::unknown_key(other, &ABOUT.names())),
            }
        }
        if config.uniques.len() > config.preserve_n as usize {
            return Err(format!(
                "unique_instances has {} uniques, more than preserve_n ({})",
                config.uniques.len(),
                config.preserve_n
            ));
        }
        Ok(config)
    }

    /// The vars a unique is launched with: the provisioner vars, then its own over them.
    pub fn unique_vars(&self, own: &Vars) -> Vars {
        let mut vars: Vars = self
            .provisioner_vars
            .iter()
            .filter(|(k, _)| !own.iter().any(|(o, _)| o == k))
            .cloned()
            .collect();
        vars.extend(own.iter().cloned());
        vars
    }
}

/// `unique_instances`: an object of uniques, each an object of scalar vars.
fn uniques(value: &serde_json::Value) -> Result<Vec<(String, Vars)>, String> {
    let map = value.as_object().ok_or_else(|| {
        format!(
            "unique_instances must be an object of uniques, each an object of vars, got {value}"
        )
    })?;
    map.iter()
        .map(|(key, vars)| {
            if key.is_empty() {
                return Err("unique_instances: a unique's key must not be empty".to_string());
            }
            Ok((
                key.clone(),
                scalar_map(&format!("unique_instances.{key}"), vars)?,
            ))
        })
        .collect()
}

impl engine_kit::EngineConfig for Config {
    const ABOUT: About = ABOUT;

    fn from_text(text: &str, current: Option<&Self>) -> Result<Self, String> {
        Config::parse(text, current.unwrap_or(&Config::default()))
    }

    fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .ignored
            .iter()
            .map(|k| ignored_key(k, "the domain's deployable decides where workers run"))
            .collect();
        if !self.preserve_n_set {
            out.push("preserve_n is not set: keeping 0 instances".into());
        }
        out
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
    fn uniques_are_checked_against_n_and_replaced_whole() {
        let c = parse(r#"{"preserve_n": 2, "unique_instances": {"a": {"k": "1"}, "b": {"n": 2}}}"#)
            .unwrap();
        assert_eq!(
            c.uniques,
            vec![
                ("a".into(), vec![("k".into(), "1".into())]),
                ("b".into(), vec![("n".into(), "2".into())])
            ]
        );
        let err = Config::parse(r#"{"preserve_n": 1}"#, &c).unwrap_err();
        assert!(err.contains("more than preserve_n (1)"), "{err}");
        let fewer = Config::parse(r#"{"unique_instances": {"b": {}}}"#, &c).unwrap();
        assert_eq!(fewer.uniques, vec![("b".into(), vec![])]);
        assert!(parse(r#"{"preserve_n": 1, "unique_instances": {"a": {}, "b": {}}}"#).is_err());
        assert!(parse(r#"{"preserve_n": 1, "unique_instances": ["a"]}"#).is_err());
        assert!(parse(r#"{"preserve_n": 1, "unique_instances": {"a": {"k": [1]}}}"#).is_err());
    }

    #[test]
    fn a_unique_s_own_vars_win_over_the_provisioner_vars() {
        let c = parse(r#"{"preserve_n": 1, "provisioner_vars": {"k": "p", "q": "p"}}"#).unwrap();
        let vars = c.unique_vars(&vec![("k".into(), "u".into())]);
        assert_eq!(
            vars,
            vec![("q".into(), "p".into()), ("k".into(), "u".into())]
        );
    }

    #[test]
    fn the_original_placement_keys_are_accepted_with_a_warning() {
        use engine_kit::EngineConfig;
        let c = parse(r#"{"preserve_n": 1, "force_site": "ec2-east"}"#).unwrap();
        assert!(c.warnings()[0].contains("force_site is ignored"));
    }

    #[test]
    fn unset_n_is_zero_and_flagged() {
        let c = parse("{}").unwrap();
        assert_eq!(c.preserve_n, 0);
        assert!(!c.preserve_n_set);
    }
}
