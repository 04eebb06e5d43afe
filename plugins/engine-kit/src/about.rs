//! What a Rust engine says it is (contract 0.5.0's `describe`), as constants: its name,
//! summary and config keys. [`crate::export_engine!`] turns them into the contract's
//! description, with the crate's version.

/// The kind of value a config key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Number,
    Boolean,
    Text,
    Object,
    Array,
    Any,
}

/// One config key: `Key::new("preserve_n", Kind::Integer, "…").min(0.0).default("0")`.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    pub doc: &'static str,
    /// The value taken when the key is not given, as JSON text.
    pub default: Option<&'static str>,
    pub required: bool,
    /// `null` unsets the key.
    pub nullable: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The only values a text key takes; empty when any text goes.
    pub choices: &'static [&'static str],
}

impl Key {
    pub const fn new(name: &'static str, kind: Kind, doc: &'static str) -> Key {
        Key {
            name,
            kind,
            doc,
            default: None,
            required: false,
            nullable: false,
            min: None,
            max: None,
            choices: &[],
        }
    }

    /// A whole number from 0, as [`crate::non_negative_int`] takes it (which also refuses
    /// one past u32::MAX).
    pub const fn count(name: &'static str, doc: &'static str) -> Key {
        Key::new(name, Kind::Integer, doc).min(0.0)
    }

    pub const fn default(self, json: &'static str) -> Key {
        Key {
            default: Some(json),
            ..self
        }
    }

    pub const fn required(self) -> Key {
        Key {
            required: true,
            ..self
        }
    }

    pub const fn nullable(self) -> Key {
        Key {
            nullable: true,
            ..self
        }
    }

    pub const fn min(self, min: f64) -> Key {
        Key {
            min: Some(min),
            ..self
        }
    }

    pub const fn max(self, max: f64) -> Key {
        Key {
            max: Some(max),
            ..self
        }
    }

    pub const fn choices(self, choices: &'static [&'static str]) -> Key {
        Key { choices, ..self }
    }
}

/// An engine's name, one-line summary and config keys.
#[derive(Clone, Copy, Debug)]
pub struct About {
    pub name: &'static str,
    pub summary: &'static str,
    pub keys: &'static [Key],
}

impl About {
    /// The names of the keys, for "known keys" in errors.
    pub fn names(&self) -> Vec<&'static str> {
        self.keys.iter().map(|k| k.name).collect()
    }
}
