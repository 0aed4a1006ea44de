//! Model prices (USD per 1M tokens) and the cost of a call's tokens.
//!
//! # Token convention
//!
//! [`Tokens`] follows OpenAI's *inclusive* convention, whatever the upstream:
//!
//! - `input` counts **all** prompt tokens, including `cached_input` (read from a
//!   prompt cache) and `cache_write` (written to one). Anthropic reports these three
//!   as disjoint counts; whoever fills a [`Tokens`] from such an answer adds them up.
//! - `output` counts all completion tokens, including `reasoning`. `reasoning` is a
//!   breakdown, never charged on top of `output`.
//!
//! So [`Price::cost`] charges `input - cached_input - cache_write` (saturating: a bad
//! upstream count never makes a negative cost) at the input rate, the cached and
//! cache-written tokens at their own rates (the input rate when a price has none),
//! and `output` at the output rate.
//!
//! # The price file
//!
//! ```toml
//! source = "providers' public pricing pages"   # optional, informational
//! date = "2026-12-01"                          # optional, informational
//!
//! [[prices]]
//! model = "openai/gpt-4o-mini"   # provider/model
//! input = 0.15                   # USD per 1M input tokens
//! output = 0.60                  # USD per 1M output tokens
//! cached_input = 0.075           # optional, defaults to `input`
//! cache_write = 0.1875           # optional, defaults to `input`
//! ```
//!
//! `provider` is a configured provider's name or a provider kind (`openai`,
//! `anthropic`, `gemini`, `openrouter`, `groq`, `mock`, …); the model is the upstream
//! model name and may itself contain `/` (`openrouter/meta-llama/llama-3.3-70b-instruct`).
//! `config-examples/prices.toml` is a starting point.

use std::collections::HashMap;

use serde::Deserialize;
use toml::Spanned;

/// A model's price, in USD per 1 million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Price {
    /// Uncached prompt tokens.
    pub input: f64,
    /// Completion tokens (reasoning included).
    pub output: f64,
    /// Prompt tokens read from a cache; `None` charges them at `input`.
    pub cached_input: Option<f64>,
    /// Prompt tokens written to a cache; `None` charges them at `input`.
    pub cache_write: Option<f64>,
}

/// A call's token counts, in OpenAI's inclusive convention (see the module docs):
/// `input` includes `cached_input` and `cache_write`; `output` includes `reasoning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// All prompt tokens, cached and cache-written ones included.
    pub input: u64,
    /// All completion tokens, reasoning included.
    pub output: u64,
    /// The part of `input` read from a prompt cache.
    pub cached_input: u64,
    /// The part of `input` written to a prompt cache.
    pub cache_write: u64,
    /// The part of `output` spent reasoning (informational: not charged twice).
    pub reasoning: u64,
}

impl Price {
    /// The cost of `t` in USD. Never negative (for non-negative prices) and never
    /// counts a token twice: uncached input is `input - cached_input - cache_write`,
    /// saturating at zero; reasoning is part of `output`.
    pub fn cost(&self, t: &Tokens) -> f64 {
        let uncached = t
            .input
            .saturating_sub(t.cached_input)
            .saturating_sub(t.cache_write);
        let cached_rate = self.cached_input.unwrap_or(self.input);
        let write_rate = self.cache_write.unwrap_or(self.input);
        (uncached as f64 * self.input
            + t.cached_input as f64 * cached_rate
            + t.cache_write as f64 * write_rate
            + t.output as f64 * self.output)
            / 1e6
    }

    /// Every rate finite and non-negative; the error names the first bad one.
    fn check(&self) -> Result<(), String> {
        check_rate("input", self.input)?;
        check_rate("output", self.output)?;
        if let Some(v) = self.cached_input {
            check_rate("cached_input", v)?;
        }
        if let Some(v) = self.cache_write {
            check_rate("cache_write", v)?;
        }
        Ok(())
    }
}

/// Prices keyed by `"provider/model"`.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    prices: HashMap<String, Price>,
    source: Option<String>,
    date: Option<String>,
}

impl PriceTable {
    /// Parses a price file (format in the module docs). Errors start with `origin`
    /// (a path, or whatever names the text) and, where known, the line; unknown
    /// keys, negative or non-finite prices, a model that is not `provider/model` and
    /// a model listed twice are all errors.
    pub fn parse(src: &str, origin: &str) -> Result<PriceTable, String> {
        let raw: RawFile = toml::from_str(src).map_err(|e| toml_error(src, origin, &e))?;
        let at = |span: std::ops::Range<usize>, msg: String| {
            format!("{origin}: line {}: {msg}", line_of(src, span.start))
        };

        let date = match raw.date {
            None => None,
            Some(d) => {
                let span = d.span();
                Some(date_text(d.into_inner()).map_err(|msg| at(span, msg))?)
            }
        };

        let mut lines: HashMap<String, usize> = HashMap::with_capacity(raw.prices.len());
        let mut prices = HashMap::with_capacity(raw.prices.len());
        for e in raw.prices {
            let model_span = e.model.span();
            let model = e.model.into_inner();
            check_model(&model).map_err(|msg| at(model_span.clone(), msg))?;
            let rate = |name: &str, v: Spanned<f64>| {
                let span = v.span();
                let v = v.into_inner();
                check_rate(name, v).map(|()| v).map_err(|msg| at(span, msg))
            };
            let opt_rate =
                |name: &str, v: Option<Spanned<f64>>| v.map(|v| rate(name, v)).transpose();
            let price = Price {
                input: rate("input", e.input)?,
                output: rate("output", e.output)?,
                cached_input: opt_rate("cached_input", e.cached_input)?,
                cache_write: opt_rate("cache_write", e.cache_write)?,
            };
            let line = line_of(src, model_span.start);
            if let Some(first) = lines.get(&model) {
                return Err(format!(
                    "{origin}: line {line}: duplicate model `{model}` (first listed at line {first})"
                ));
            }
            lines.insert(model.clone(), line);
            prices.insert(model, price);
        }
        Ok(PriceTable {
            prices,
            source: raw.source,
            date,
        })
    }

    /// A table from already-parsed entries (inline `[[usage.prices]]` tables in the
    /// config). Checks them as [`PriceTable::parse`] does; errors name the model and
    /// its 1-based position, as the caller knows the lines.
    pub fn from_entries(entries: Vec<(String, Price)>) -> Result<PriceTable, String> {
        let mut prices: HashMap<String, Price> = HashMap::with_capacity(entries.len());
        let mut first: HashMap<&str, usize> = HashMap::with_capacity(entries.len());
        for (i, (model, _)) in entries.iter().enumerate() {
            if let Some(j) = first.insert(model.as_str(), i + 1) {
                return Err(format!(
                    "price entry {}: duplicate model `{model}` (first listed as entry {j})",
                    i + 1
                ));
            }
        }
        drop(first);
        for (i, (model, price)) in entries.into_iter().enumerate() {
            check_model(&model).map_err(|msg| format!("price entry {}: {msg}", i + 1))?;
            price
                .check()
                .map_err(|msg| format!("price entry {} (`{model}`): {msg}", i + 1))?;
            prices.insert(model, price);
        }
        Ok(PriceTable {
            prices,
            source: None,
            date: None,
        })
    }

    /// Adds `other`'s prices to this table; where both price a model, `other` wins.
    /// `other`'s `source` and `date`, when set, replace these.
    pub fn merge(&mut self, other: PriceTable) {
        self.prices.extend(other.prices);
        if other.source.is_some() {
            self.source = other.source;
        }
        if other.date.is_some() {
            self.date = other.date;
        }
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    /// True if no model is priced.
    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// The price under exactly this `"provider/model"` key.
    pub fn get(&self, key: &str) -> Option<&Price> {
        self.prices.get(key)
    }

    /// The file's informational `source`, if it had one.
    pub fn source(&self) -> Option<&str> {
        self.source.as_deref()
    }

    /// The file's informational `date` (`YYYY-MM-DD`), if it had one.
    pub fn date(&self) -> Option<&str> {
        self.date.as_deref()
    }

    /// The price of `model` served by the provider configured as `provider_name`,
    /// of kind `provider_kind`: `name/model` first (a price for one account), then
    /// `kind/model` (the list price for everyone using that upstream).
    ///
    /// Matching is exact: a date or version suffix is **not** stripped, so
    /// `claude-3-5-haiku-20241022` does not find a price listed for
    /// `claude-3-5-haiku-latest`, nor `gpt-4o-mini-2024-07-18` one for `gpt-4o-mini`.
    /// List each name a client may send (alias and dated snapshot); an unpriced model
    /// is reported as such, never billed at a guess. Builds one `String` per call.
    pub fn lookup(&self, provider_name: &str, provider_kind: &str, model: &str) -> Option<&Price> {
        if self.prices.is_empty() {
            return None;
        }
        let mut key =
            String::with_capacity(provider_name.len().max(provider_kind.len()) + 1 + model.len());
        for (i, provider) in [provider_name, provider_kind].into_iter().enumerate() {
            if i == 1 && provider_kind == provider_name {
                break;
            }
            key.clear();
            key.push_str(provider);
            key.push('/');
            key.push_str(model);
            if let Some(p) = self.prices.get(&key) {
                return Some(p);
            }
        }
        None
    }
}

/// The price file's exact shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<String>,
    /// A string `"YYYY-MM-DD"` or a bare TOML date.
    date: Option<Spanned<toml::Value>>,
    #[serde(default)]
    prices: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    model: Spanned<String>,
    input: Spanned<f64>,
    output: Spanned<f64>,
    cached_input: Option<Spanned<f64>>,
    cache_write: Option<Spanned<f64>>,
}

fn check_rate(name: &str, v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!(
            "`{name}` must be a finite number of USD per 1M tokens, not {v}"
        ));
    }
    if v < 0.0 {
        return Err(format!("`{name}` must not be negative (got {v})"));
    }
    Ok(())
}

/// `provider/model`, both parts non-empty; the model part may contain `/`.
fn check_model(model: &str) -> Result<(), String> {
    if model.trim().is_empty() {
        return Err("`model` is empty; expected `provider/model`".to_owned());
    }
    if model.trim() != model {
        return Err(format!("`model` `{model}` has surrounding whitespace"));
    }
    match model.split_once('/') {
        Some((provider, name)) if !provider.is_empty() && !name.is_empty() => Ok(()),
        Some(_) => Err(format!(
            "`model` `{model}` must be `provider/model` with both parts non-empty"
        )),
        None => Err(format!(
            "`model` `{model}` has no provider: expected `provider/model` (e.g. `openai/{model}`)"
        )),
    }
}

/// The `date` key as `YYYY-MM-DD`.
fn date_text(v: toml::Value) -> Result<String, String> {
    let text = match v {
        toml::Value::String(s) => s,
        toml::Value::Datetime(d) if d.date.is_some() && d.time.is_none() => d.to_string(),
        other => {
            return Err(format!(
                "`date` must be \"YYYY-MM-DD\", not {}",
                other.type_str()
            ))
        }
    };
    let b = text.as_bytes();
    let shape_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    if shape_ok {
        Ok(text)
    } else {
        Err(format!("`date` must be \"YYYY-MM-DD\", not \"{text}\""))
    }
}

/// A TOML or serde error with `origin` and its line, quoting the line (serde's type
/// errors do not name the key) — as the config loader reports them.
fn toml_error(src: &str, origin: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim();
    match e.span().map(|s| line_of(src, s.start)) {
        Some(l) => match src.lines().nth(l - 1).map(str::trim) {
            Some(text) if !text.is_empty() => format!("{origin}: line {l}: {msg} (in `{text}`)"),
            _ => format!("{origin}: line {l}: {msg}"),
        },
        None => format!("{origin}: {msg}"),
    }
}

/// 1-based line of a byte offset.
fn line_of(src: &str, offset: usize) -> usize {
    src[..offset.min(src.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../../../config-examples/prices.toml");

    fn parse(src: &str) -> Result<PriceTable, String> {
        PriceTable::parse(src, "prices.toml")
    }

    fn err(src: &str) -> String {
        match parse(src) {
            Ok(t) => panic!("expected an error, got {t:?}"),
            Err(e) => e,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn parses_a_good_file() {
        let t = parse(
            r#"source = "pricing pages"
date = "2026-12-01"

[[prices]]
model = "openai/gpt-4o-mini"
input = 0.15
output = 0.60
cached_input = 0.075

[[prices]]
model = "anthropic/claude-opus-4-0"
input = 15        # an integer is a price
output = 75
cached_input = 1.5
cache_write = 18.75

[[prices]]
model = "openrouter/meta-llama/llama-3.3-70b-instruct"
input = 0
output = 0.4
"#,
        )
        .expect("valid");
        assert_eq!(t.len(), 3);
        assert!(!t.is_empty());
        assert_eq!(t.source(), Some("pricing pages"));
        assert_eq!(t.date(), Some("2026-12-01"));
        assert_eq!(
            t.get("openai/gpt-4o-mini"),
            Some(&Price {
                input: 0.15,
                output: 0.60,
                cached_input: Some(0.075),
                cache_write: None
            })
        );
        assert_eq!(
            t.get("anthropic/claude-opus-4-0"),
            Some(&Price {
                input: 15.0,
                output: 75.0,
                cached_input: Some(1.5),
                cache_write: Some(18.75)
            })
        );
        // The model part keeps its own slashes.
        assert!(t
            .lookup(
                "openrouter",
                "openrouter",
                "meta-llama/llama-3.3-70b-instruct"
            )
            .is_some());
    }

    #[test]
    fn empty_file_and_bare_toml_date_are_fine() {
        let t = parse("").expect("empty is valid");
        assert!(t.is_empty());
        assert_eq!(t.date(), None);
        let t = parse("date = 2026-12-01\n").expect("a TOML date is valid");
        assert_eq!(t.date(), Some("2026-12-01"));
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 2.5\noutput = 10\nouput = 1\n");
        assert!(e.starts_with("prices.toml: line 5:"), "{e}");
        assert!(e.contains("ouput"), "{e}");

        let e = err("currency = \"EUR\"\n");
        assert!(e.starts_with("prices.toml: line 1:"), "{e}");
        assert!(e.contains("currency"), "{e}");
    }

    #[test]
    fn bad_values_name_origin_and_line() {
        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = -2.5\noutput = 10\n");
        assert!(e.starts_with("prices.toml: line 3:"), "{e}");
        assert!(e.contains("`input`") && e.contains("negative"), "{e}");

        let e = err(
            "[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 2.5\noutput = 10\ncache_write = -0.1\n",
        );
        assert!(
            e.starts_with("prices.toml: line 5:") && e.contains("cache_write"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = inf\noutput = 10\n");
        assert!(
            e.starts_with("prices.toml: line 3:") && e.contains("finite"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 1\noutput = nan\n");
        assert!(
            e.starts_with("prices.toml: line 4:") && e.contains("finite"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = \"2.5\"\noutput = 10\n");
        assert!(e.starts_with("prices.toml: line 3:"), "{e}");

        let e = err("\n[[prices]]\nmodel = \"gpt-4o\"\ninput = 1\noutput = 1\n");
        assert!(
            e.starts_with("prices.toml: line 3:") && e.contains("no provider"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"\"\ninput = 1\noutput = 1\n");
        assert!(
            e.starts_with("prices.toml: line 2:") && e.contains("empty"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"openai/\"\ninput = 1\noutput = 1\n");
        assert!(e.starts_with("prices.toml: line 2:"), "{e}");

        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 1\n");
        assert!(
            e.starts_with("prices.toml: ") && e.contains("output"),
            "{e}"
        );

        let e = err("date = \"1 December 2026\"\n");
        assert!(
            e.starts_with("prices.toml: line 1:") && e.contains("YYYY-MM-DD"),
            "{e}"
        );

        let e = err("[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 1\noutput = 1\n[[prices\n");
        assert!(e.starts_with("prices.toml: line 5:"), "{e}");
    }

    #[test]
    fn a_duplicate_model_names_both_lines() {
        let e = err(
            "[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 2.5\noutput = 10\n\n\
             [[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 5\noutput = 15\n",
        );
        assert!(e.starts_with("prices.toml: line 7:"), "{e}");
        assert!(e.contains("duplicate model `openai/gpt-4o`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn from_entries_checks_like_parse() {
        let p = Price {
            input: 1.0,
            output: 2.0,
            cached_input: None,
            cache_write: None,
        };
        let t = PriceTable::from_entries(vec![("mock/mock-fast".into(), p)]).expect("valid");
        assert_eq!(t.get("mock/mock-fast"), Some(&p));

        let e = PriceTable::from_entries(vec![("mock/a".into(), p), ("mock/a".into(), p)])
            .expect_err("duplicate");
        assert!(e.contains("duplicate") && e.contains("entry 1"), "{e}");
        let e = PriceTable::from_entries(vec![("mock".into(), p)]).expect_err("no slash");
        assert!(e.contains("no provider"), "{e}");
        let bad = Price {
            cached_input: Some(-1.0),
            ..p
        };
        let e = PriceTable::from_entries(vec![("mock/a".into(), bad)]).expect_err("negative");
        assert!(e.contains("cached_input") && e.contains("negative"), "{e}");
    }

    #[test]
    fn merge_lets_the_other_table_win() {
        let mut base = parse(
            "source = \"file\"\n[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 2.5\noutput = 10\n\
             [[prices]]\nmodel = \"mock/mock-fast\"\ninput = 1\noutput = 2\n",
        )
        .expect("valid");
        let inline = PriceTable::from_entries(vec![(
            "openai/gpt-4o".into(),
            Price {
                input: 1.0,
                output: 4.0,
                cached_input: None,
                cache_write: None,
            },
        )])
        .expect("valid");
        base.merge(inline);
        assert_eq!(base.len(), 2);
        assert_eq!(base.get("openai/gpt-4o").map(|p| p.input), Some(1.0));
        assert_eq!(base.get("mock/mock-fast").map(|p| p.output), Some(2.0));
        assert_eq!(
            base.source(),
            Some("file"),
            "an unset source does not erase one"
        );
    }

    #[test]
    fn lookup_prefers_the_provider_name_over_its_kind() {
        let t = parse(
            "[[prices]]\nmodel = \"openai/gpt-4o\"\ninput = 2.5\noutput = 10\n\
             [[prices]]\nmodel = \"azure-east/gpt-4o\"\ninput = 2\noutput = 8\n\
             [[prices]]\nmodel = \"anthropic/claude-3-5-haiku-latest\"\ninput = 0.8\noutput = 4\n",
        )
        .expect("valid");
        // Name first.
        assert_eq!(
            t.lookup("azure-east", "openai", "gpt-4o").map(|p| p.input),
            Some(2.0)
        );
        // Then kind.
        assert_eq!(
            t.lookup("work-openai", "openai", "gpt-4o").map(|p| p.input),
            Some(2.5)
        );
        assert_eq!(
            t.lookup("openai", "openai", "gpt-4o").map(|p| p.input),
            Some(2.5)
        );
        // Neither.
        assert_eq!(t.lookup("work-openai", "openai", "gpt-4o-mini"), None);
        // Exact only: a dated snapshot or a bare alias is not matched by a suffix rule.
        assert_eq!(
            t.lookup("anthropic", "anthropic", "claude-3-5-haiku-20241022"),
            None
        );
        assert_eq!(t.lookup("openai", "openai", "gpt-4o-2024-08-06"), None);
        assert_eq!(
            PriceTable::default().lookup("openai", "openai", "gpt-4o"),
            None
        );
    }

    const PRICE: Price = Price {
        input: 3.0,
        output: 15.0,
        cached_input: Some(0.3),
        cache_write: Some(3.75),
    };

    #[test]
    fn cost_plain() {
        let t = Tokens {
            input: 1_000,
            output: 500,
            ..Tokens::default()
        };
        // 1000 * 3 + 500 * 15 = 10_500 micro-USD.
        assert!(close(PRICE.cost(&t), 0.0105), "{}", PRICE.cost(&t));
        assert_eq!(PRICE.cost(&Tokens::default()), 0.0);
    }

    #[test]
    fn cost_cached() {
        let t = Tokens {
            input: 1_000,
            cached_input: 800,
            output: 100,
            ..Tokens::default()
        };
        // 200 * 3 + 800 * 0.3 + 100 * 15 = 600 + 240 + 1500 = 2340 micro-USD.
        assert!(close(PRICE.cost(&t), 0.00234), "{}", PRICE.cost(&t));
        // No cached rate: cached tokens cost the input rate.
        let flat = Price {
            cached_input: None,
            ..PRICE
        };
        // 1000 * 3 + 100 * 15 = 4500.
        assert!(close(flat.cost(&t), 0.0045), "{}", flat.cost(&t));
    }

    #[test]
    fn cost_cache_write() {
        let t = Tokens {
            input: 2_000,
            cached_input: 500,
            cache_write: 1_000,
            output: 10,
            ..Tokens::default()
        };
        // 500 * 3 + 500 * 0.3 + 1000 * 3.75 + 10 * 15 = 1500 + 150 + 3750 + 150 = 5550.
        assert!(close(PRICE.cost(&t), 0.00555), "{}", PRICE.cost(&t));
        let no_write_rate = Price {
            cache_write: None,
            ..PRICE
        };
        // 500 * 3 + 500 * 0.3 + 1000 * 3 + 150 = 4800.
        assert!(
            close(no_write_rate.cost(&t), 0.0048),
            "{}",
            no_write_rate.cost(&t)
        );
    }

    #[test]
    fn cost_reasoning_is_not_counted_twice() {
        let with = Tokens {
            input: 100,
            output: 1_000,
            reasoning: 900,
            ..Tokens::default()
        };
        let without = Tokens {
            reasoning: 0,
            ..with
        };
        // 100 * 3 + 1000 * 15 = 15_300.
        assert!(close(PRICE.cost(&with), 0.0153), "{}", PRICE.cost(&with));
        assert_eq!(PRICE.cost(&with), PRICE.cost(&without));
    }

    #[test]
    fn cost_saturates_when_cached_exceeds_input() {
        let t = Tokens {
            input: 100,
            cached_input: 150,
            cache_write: 50,
            output: 0,
            reasoning: 0,
        };
        // Uncached input saturates at 0: 150 * 0.3 + 50 * 3.75 = 45 + 187.5 = 232.5.
        let c = PRICE.cost(&t);
        assert!(c >= 0.0);
        assert!(close(c, 0.0002325), "{c}");
        let huge = Tokens {
            input: 0,
            cached_input: u64::MAX,
            ..Tokens::default()
        };
        assert!(PRICE.cost(&huge).is_finite() && PRICE.cost(&huge) > 0.0);
    }

    #[test]
    fn the_example_price_file_parses() {
        let t =
            PriceTable::parse(EXAMPLE, "config-examples/prices.toml").expect("example is valid");
        assert_eq!(t.date(), Some("2026-12-01"));
        assert!(t.source().is_some());
        assert_eq!(
            t.lookup("mock", "mock", "mock-fast"),
            Some(&Price {
                input: 1.0,
                output: 2.0,
                cached_input: None,
                cache_write: None
            })
        );
        let opus = t
            .lookup("claude", "anthropic", "claude-opus-4-20250514")
            .expect("opus is priced");
        assert!(close(opus.cached_input.unwrap_or(0.0), opus.input * 0.10));
        assert!(close(opus.cache_write.unwrap_or(0.0), opus.input * 1.25));
        for key in [
            "openai/gpt-4o",
            "openai/gpt-4o-mini",
            "openai/gpt-4.1",
            "openai/gpt-4.1-mini",
            "openai/gpt-4.1-nano",
            "openai/o3",
            "openai/o4-mini",
            "anthropic/claude-sonnet-4-20250514",
            "anthropic/claude-sonnet-4-0",
            "anthropic/claude-3-5-haiku-latest",
            "anthropic/claude-3-5-haiku-20241022",
            "gemini/gemini-2.5-flash",
            "gemini/gemini-2.5-pro",
            "gemini/gemini-2.0-flash",
            "groq/llama-3.3-70b-versatile",
        ] {
            assert!(t.get(key).is_some(), "{key} is priced");
        }
    }
}
