//! Where in the file a problem is: line numbers for errors, from serde's spans where
//! it has one and from the text otherwise.

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

/// Finds the line of `key = …` inside the table whose header satisfies `is_header`
/// (the `nth` such table), for errors serde cannot place.
pub(crate) fn locate_key(
    src: &str,
    is_header: &dyn Fn(&str) -> bool,
    nth: usize,
    key: Option<&str>,
) -> Option<usize> {
    let mut seen = 0;
    let mut inside = false;
    for (i, line) in src.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            if inside {
                return None;
            }
            if is_header(t) {
                if seen == nth {
                    inside = true;
                    if key.is_none() {
                        return Some(i + 1);
                    }
                }
                seen += 1;
            }
            continue;
        }
        if inside {
            if let Some(k) = key {
                let k_quoted = format!("\"{k}\"");
                let rest = t
                    .strip_prefix(k)
                    .or_else(|| t.strip_prefix(k_quoted.as_str()));
                if rest.is_some_and(|r| r.trim_start().starts_with('=')) {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

pub(super) fn provider_header(name: &str) -> impl Fn(&str) -> bool + '_ {
    move |t: &str| {
        let inner = t
            .trim_start_matches('[')
            .trim_end_matches(']')
            .replace(' ', "");
        inner == format!("providers.{name}") || inner == format!("providers.\"{name}\"")
    }
}

/// Finds the first non-comment line mentioning `needle`.
pub(crate) fn locate_text(src: &str, needle: &str) -> Option<usize> {
    src.lines()
        .enumerate()
        .find(|(_, l)| !l.trim_start().starts_with('#') && l.contains(needle))
        .map(|(i, _)| i + 1)
}
