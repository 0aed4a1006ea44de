//! `${VAR}` / `${VAR:-default}` expansion and duration strings.

use std::time::Duration;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${NAME}` names a variable that is not set, and gives no default.
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    /// A `${` with no `}` after it.
    #[error("unterminated `${{` (close it with `}}`, or write `$${{` for a literal `${{`)")]
    Unterminated,
}

/// Expands `${VAR}` and `${VAR:-default}` in `input`; `$${` is a literal `${`.
/// Fails on the first unset variable without a default, or on a `${` never closed.
pub fn expand_env(
    input: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ExpandError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let Some(end) = tail.find('}') else {
                return Err(ExpandError::Unterminated);
            };
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            match (lookup(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => return Err(ExpandError::Unset(name.to_owned())),
                (Some(v), None) => out.push_str(&v),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `"250ms"`, `"30s"`, `"1.5s"`, `"5m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {s:?} has no unit (use ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "duration {s:?} has unknown unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("duration {s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_rules() {
        let unset = |n: &str| Err(ExpandError::Unset(n.to_owned()));
        let rows: &[(&str, Result<&str, ExpandError>)] = &[
            ("plain", Ok("plain")),
            ("${SET}", Ok("value")),
            ("a-${SET}-b", Ok("a-value-b")),
            ("${UNSET:-dflt}", Ok("dflt")),
            ("${SET:-dflt}", Ok("value")),
            ("${EMPTY:-dflt}", Ok("dflt")),
            ("${EMPTY}", Ok("")),
            ("${UNSET}", unset("UNSET")),
            ("${UNCLOSED", Err(ExpandError::Unterminated)),
            ("a ${SET} then ${", Err(ExpandError::Unterminated)),
            ("$${SET}", Ok("${SET}")),
            ("cost $5", Ok("cost $5")),
            ("${UNSET:-}", Ok("")),
        ];
        for (input, want) in rows {
            let got = expand_env(input, &env);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                want.clone(),
                "{input}"
            );
        }
    }

    #[test]
    fn durations() {
        let rows: &[(&str, Option<u64>)] = &[
            ("250ms", Some(250)),
            ("30s", Some(30_000)),
            ("1.5s", Some(1_500)),
            ("2m", Some(120_000)),
            ("1h", Some(3_600_000)),
            ("30", None),
            ("fast", None),
            ("5 parsecs", None),
        ];
        for (input, want) in rows {
            let got = parse_duration(input).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "{input}");
        }
    }
}
