//! Where in the file a problem is: line numbers from the TOML parser's spans
//! (`toml::Spanned`), indexed once per load by key path, never by scanning the text.

use std::collections::HashMap;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

pub(super) fn toml_error(src: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(src, s.start));
    let msg = e.message().trim().to_owned();
    ConfigError::new(
        match line {
            // Quote the line: serde's type errors do not name the key.
            Some(l) => match src.lines().nth(l - 1).map(str::trim) {
                Some(text) if !text.is_empty() => format!("line {l}: {msg} (in `{text}`)"),
                _ => format!("line {l}: {msg}"),
            },
            None => msg,
        },
        line,
    )
}

/// 1-based line of a byte offset.
pub(super) fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Separates the segments of a key path in [`Lines`]' index (a TOML key may hold
/// `.`, but not this).
const SEP: char = '\u{1f}';

/// The line of every key, table and array item of one config file, keyed by its path
/// (`["providers", "openai", "timeout"]`, `["routes", "1", "name"]`: array items by
/// index), and of every string value. Built from the parser's spans, so a key is
/// found wherever the file puts it: a `[table]` header, a dotted key, an inline table.
/// Empty for a config built in code, whose errors name the key instead.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    keys: HashMap<String, usize>,
    /// Every string value with its line, in file order.
    strings: Vec<(String, usize)>,
}

impl Lines {
    /// Parses `src` once: the index, and the tree the config is deserialized from.
    pub(super) fn parse(src: &str) -> Result<(Self, Spanned<DeTable<'_>>), ConfigError> {
        let root = DeTable::parse(src).map_err(|e| toml_error(src, &e))?;
        let mut lines = Lines::default();
        let mut path = String::new();
        lines.table(src, root.get_ref(), &mut path);
        Ok((lines, root))
    }

    /// The index of `src`, or an empty one when it does not parse.
    #[cfg(test)]
    pub(crate) fn of(src: &str) -> Self {
        Self::parse(src).map(|(l, _)| l).unwrap_or_default()
    }

    fn table(&mut self, src: &str, table: &DeTable<'_>, path: &mut String) {
        for (key, value) in table {
            let len = path.len();
            if !path.is_empty() {
                path.push(SEP);
            }
            path.push_str(key.get_ref());
            self.keys
                .entry(path.clone())
                .or_insert_with(|| line_of(src, key.span().start));
            self.value(src, value, path);
            path.truncate(len);
        }
    }

    fn value(&mut self, src: &str, value: &Spanned<DeValue<'_>>, path: &mut String) {
        match value.get_ref() {
            DeValue::Table(t) => self.table(src, t, path),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push(SEP);
                    path.push_str(&i.to_string());
                    self.keys
                        .insert(path.clone(), line_of(src, item.span().start));
                    self.value(src, item, path);
                    path.truncate(len);
                }
            }
            DeValue::String(s) => self
                .strings
                .push((s.to_string(), line_of(src, value.span().start))),
            _ => {}
        }
    }

    /// The line of the key at `path`.
    pub(crate) fn key(&self, path: &[&str]) -> Option<usize> {
        let mut joined = String::with_capacity(path.iter().map(|p| p.len() + 1).sum());
        for (i, p) in path.iter().enumerate() {
            if i > 0 {
                joined.push(SEP);
            }
            joined.push_str(p);
        }
        self.keys.get(&joined).copied()
    }

    /// The line of the first string value containing `needle`.
    pub(crate) fn string_containing(&self, needle: &str) -> Option<usize> {
        self.strings
            .iter()
            .find(|(s, _)| s.contains(needle))
            .map(|&(_, line)| line)
    }

    /// The line of the first string value equal to `value`.
    pub(crate) fn string(&self, value: &str) -> Option<usize> {
        self.strings
            .iter()
            .find(|(s, _)| s == value)
            .map(|&(_, line)| line)
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn keys_are_found_wherever_the_file_puts_them() {
        let src = "\
[server]
listen = \"x\"

[providers.a]
kind = \"mock\"

[providers.\"b.c\"]
kind = \"x\"
headers = { a = \"${H}\" }

[[routes]]
name = \"r\"

[[routes]]
# a comment naming kind = \"mock\"
name = \"s\"
targets = [\"a\", { target = \"b\" }]
[routing]
health.failures = 1
";
        let l = Lines::of(src);
        assert_eq!(l.key(&["server", "listen"]), Some(2));
        assert_eq!(l.key(&["providers", "a"]), Some(4));
        assert_eq!(l.key(&["providers", "a", "kind"]), Some(5));
        assert_eq!(l.key(&["providers", "b.c", "headers", "a"]), Some(9));
        assert_eq!(l.key(&["routes", "0"]), Some(11));
        assert_eq!(l.key(&["routes", "1"]), Some(14));
        assert_eq!(l.key(&["routes", "1", "name"]), Some(16));
        assert_eq!(l.key(&["routes", "1", "targets", "1", "target"]), Some(17));
        assert_eq!(l.key(&["routing", "health", "failures"]), Some(19));
        assert_eq!(l.key(&["routes", "2"]), None);
        assert_eq!(l.string_containing("${H"), Some(9));
        assert_eq!(l.string("s"), Some(16));
        assert!(Lines::of("not = [toml").key(&["not"]).is_none());
    }
}
