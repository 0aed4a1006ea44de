//! What a provider factory's options type is read with: the names of its fields
//! (the keys a kind accepts) and the value types the config file's own keys use.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The field names of a struct deriving `Deserialize` (after `rename`s), as serde's
/// derive passes them to [`Deserializer::deserialize_struct`]; empty for anything
/// that is not a plain struct (a map, a `#[serde(flatten)]` struct).
pub(crate) fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    match T::deserialize(FieldNames) {
        Err(Captured::Fields(fields)) => fields,
        _ => &[],
    }
}

/// A deserializer that only answers "which fields?".
struct FieldNames;

#[derive(Debug)]
enum Captured {
    Fields(&'static [&'static str]),
    NotAStruct,
}

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reading field names")
    }
}

impl std::error::Error for Captured {}

impl de::Error for Captured {
    fn custom<M: fmt::Display>(_: M) -> Self {
        Captured::NotAStruct
    }
}

impl<'de> Deserializer<'de> for FieldNames {
    type Error = Captured;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Captured> {
        Err(Captured::NotAStruct)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Captured> {
        Err(Captured::Fields(fields))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

/// An option a factory's options type refused ([`super::ProviderOptions::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's key (the first segment of `path`).
    pub key: String,
    /// Where in the option the value at fault is: the key itself, or deeper
    /// (`beta[1]`); empty when the error is about the options as a whole.
    pub path: String,
    /// Serde's message.
    pub message: String,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "`{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for OptionError {}

/// A duration option, written as the config's other durations are (`"250ms"`,
/// `"2s"`, `"1m"`): a field of this type in a factory's options reads that syntax.
///
/// ```
/// use modelway_core::config::{DurationOption, ProviderOptions};
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Options { delay: Option<DurationOption> }
/// let o: Options = ProviderOptions::from_toml_str("delay = \"250ms\"").unwrap().read().unwrap();
/// assert_eq!(o.delay.unwrap().get(), std::time::Duration::from_millis(250));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DurationOption(pub Duration);

impl DurationOption {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for DurationOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s)
            .map(DurationOption)
            .map_err(de::Error::custom)
    }
}

/// A string option that may also be written as a list (`beta = "a"` or
/// `beta = ["a", "b"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StringsOption(pub Vec<String>);

impl<'de> Deserialize<'de> for StringsOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringsOption;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StringsOption, E> {
                Ok(StringsOption(vec![s.to_owned()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StringsOption, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(StringsOption(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderOptions;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Opts {
        a: Option<u64>,
        #[serde(rename = "b-b")]
        b: Option<bool>,
        delay: Option<DurationOption>,
        beta: Option<StringsOption>,
    }

    #[test]
    fn field_names_are_read_from_the_type() {
        assert_eq!(field_names::<Opts>(), ["a", "b-b", "delay", "beta"]);
        assert_eq!(field_names::<crate::provider::NoOptions>(), [] as [&str; 0]);
        // Not a struct: no names, so every key is refused.
        assert!(field_names::<std::collections::HashMap<String, u64>>().is_empty());
        assert!(field_names::<u64>().is_empty());
    }

    #[test]
    fn reading_names_the_key_at_fault() {
        let read = |src: &str| ProviderOptions::from_toml_str(src).unwrap().read::<Opts>();
        let o = read("a = 3\ndelay = \"2s\"\nbeta = [\"x\", \"y\"]").unwrap();
        assert_eq!(o.a, Some(3));
        assert_eq!(o.delay, Some(DurationOption(Duration::from_secs(2))));
        assert_eq!(o.beta.unwrap().0, ["x", "y"]);
        assert_eq!(read("beta = \"x\"").unwrap().beta.unwrap().0, ["x"]);
        let e = read("a = \"three\"").unwrap_err();
        assert_eq!(e.key, "a");
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = read("delay = \"soon\"").unwrap_err();
        assert_eq!(e.key, "delay");
        assert!(e.to_string().contains("soon"), "{e}");
        let e = read("beta = [\"x\", 2]").unwrap_err();
        assert_eq!(e.key, "beta");
        assert!(e.to_string().contains("beta[1]"), "{e}");
        let e = read("a = -1").unwrap_err();
        assert_eq!(e.key, "a");
    }
}
