//! Every file in config-examples/ loads, validates and builds with the built-in
//! providers, and resolves the models its comments promise; `prices.toml`, a price
//! file rather than a config, parses as one.
#![allow(clippy::unwrap_used)]

use modelway_core::{Config, HttpClient, Snapshot};

fn example(name: &str) -> (String, Snapshot) {
    let path = format!("{}/../config-examples/{name}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).unwrap();
    // Secrets get placeholders, as an operator would set them; the rest keep defaults.
    let cfg =
        Config::from_toml_str_with_env(&src, &|k| k.contains("KEY").then(|| format!("test-{k}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    let snap = Snapshot::build(
        cfg,
        &modelway::builtin_registry(),
        &HttpClient::new(),
        &std::sync::Arc::default(),
        None,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    (src, snap)
}

fn resolves(snap: &Snapshot, model: &str) -> String {
    let plan = snap
        .router
        .resolve(model)
        .unwrap_or_else(|| panic!("{model} did not resolve"));
    plan.targets
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn every_example_is_covered_here() {
    let dir = format!("{}/../config-examples", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "anthropic.toml",
            "gemini.toml",
            "keys-and-limits.toml",
            "multi-provider.toml",
            "observability.toml",
            "openai.toml",
            "openrouter.toml",
            "prices.toml",
            "quickstart.toml"
        ]
    );
}

#[test]
fn prices_example_is_a_price_file() {
    use modelway_core::usage::PriceTable;
    let path = format!(
        "{}/../config-examples/prices.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let src = std::fs::read_to_string(&path).unwrap();
    let prices = PriceTable::parse(&src, "prices.toml").unwrap_or_else(|e| panic!("{e}"));
    let mock = prices.lookup("mock", "mock", "mock-fast").unwrap();
    assert_eq!((mock.input, mock.output), (1.0, 2.0));
}

#[test]
fn quickstart_matches_the_builtin_default() {
    let (src, snap) = example("quickstart.toml");
    let body: String = src
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(body.trim(), modelway_core::config::QUICKSTART.trim());
    assert_eq!(resolves(&snap, "fast"), "mock/mock-fast");
    assert_eq!(resolves(&snap, "anything"), "mock/anything");
}

#[test]
fn observability_example() {
    use modelway_core::config::{LogFormat, OtlpProtocol};
    let (_, snap) = example("observability.toml");
    assert_eq!(resolves(&snap, "fast"), "mock/mock-fast");
    let t = snap.config.telemetry();
    assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4317"));
    assert_eq!(t.otlp_protocol, Some(OtlpProtocol::Grpc));
    assert_eq!(t.sample_ratio, Some(1.0));
    assert_eq!(t.log_format, LogFormat::Json);
    assert!(!t.capture_content);
}

#[test]
fn keys_and_limits_example() {
    use modelway_core::config::{OnStoreError, StoreConfig};
    let (_, snap) = example("keys-and-limits.toml");
    assert_eq!(resolves(&snap, "fast"), "mock/mock-fast,spare/mock-fast");
    let c = &snap.config;
    assert_eq!(c.server().max_in_flight, 4096);
    assert_eq!(c.server().max_in_flight_bytes, 512 << 20);
    assert_eq!(c.limits().store, StoreConfig::Memory);
    assert_eq!(c.limits().on_store_error, OnStoreError::Allow);
    let web = &c.auth().keys[0];
    assert_eq!(
        (web.limits.rpm, web.limits.tpm, web.limits.max_concurrent),
        (Some(600), Some(200000), Some(20))
    );
    assert!(web.allows("mock/anything") && !web.allows("spare/x"));
    // The placeholder the test env gives MODELWAY_KEY_WEB, and sha256("test").
    assert_eq!(
        c.auth().lookup("test-MODELWAY_KEY_WEB").unwrap().name,
        "web"
    );
    assert_eq!(c.auth().lookup("test").unwrap().name, "ci");
    assert!(c.auth().open_relay("0.0.0.0:4000").is_none());
    let mock = &c.providers()["mock"];
    assert_eq!(mock.rpm, Some(1000));
    assert!(mock.allow_client_key);
}

#[test]
fn openai_example() {
    let (_, snap) = example("openai.toml");
    assert_eq!(resolves(&snap, "fast"), "openai/gpt-4o-mini");
    assert_eq!(resolves(&snap, "gpt-4.1"), "openai/gpt-4.1");
    assert_eq!(
        snap.config.providers()["openai"]
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "test-OPENAI_API_KEY"
    );
}

#[test]
fn openrouter_example() {
    let (_, snap) = example("openrouter.toml");
    assert_eq!(
        resolves(&snap, "meta-llama/llama-3.3-70b-instruct"),
        "openrouter/meta-llama/llama-3.3-70b-instruct"
    );
    assert_eq!(
        resolves(&snap, "anthropic/claude-sonnet-4"),
        "openrouter/anthropic/claude-sonnet-4"
    );
}

#[test]
fn multi_provider_example() {
    let (_, snap) = example("multi-provider.toml");
    assert_eq!(
        resolves(&snap, "fast"),
        "groq/llama-3.3-70b-versatile,openrouter/meta-llama/llama-3.3-70b-instruct"
    );
    assert_eq!(resolves(&snap, "gpt-4o-mini"), "openai/gpt-4o-mini");
    assert_eq!(resolves(&snap, "openai/gpt-4o"), "openai/gpt-4o");
    assert_eq!(
        resolves(&snap, "mistralai/mistral-large"),
        "openrouter/mistralai/mistral-large"
    );
    assert_eq!(snap.config.auth().keys.len(), 1);
    assert_eq!(
        snap.config.providers()["local"].base_url.as_deref(),
        Some("http://127.0.0.1:11434/v1")
    );
}

#[test]
fn anthropic_example() {
    let (_, snap) = example("anthropic.toml");
    assert_eq!(resolves(&snap, "fast"), "anthropic/claude-3-5-haiku-latest");
    assert_eq!(
        resolves(&snap, "claude-opus-4-1"),
        "anthropic/claude-opus-4-1"
    );
    assert_eq!(
        resolves(&snap, "anthropic/claude-sonnet-4-5"),
        "anthropic/claude-sonnet-4-5"
    );
    assert_eq!(
        snap.config.providers()["anthropic"]
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "test-ANTHROPIC_API_KEY"
    );
}

#[test]
fn gemini_example() {
    let (_, snap) = example("gemini.toml");
    assert_eq!(resolves(&snap, "fast"), "gemini/gemini-2.5-flash");
    assert_eq!(
        resolves(&snap, "smart"),
        "gemini/gemini-2.5-pro,gemini/gemini-2.5-flash"
    );
    assert_eq!(
        resolves(&snap, "gemini-3-pro-preview"),
        "gemini/gemini-3-pro-preview"
    );
    assert_eq!(
        resolves(&snap, "google/gemini-2.5-pro"),
        "gemini/gemini-2.5-pro"
    );
    assert_eq!(
        snap.config.providers()["gemini"]
            .api_key
            .as_ref()
            .unwrap()
            .expose(),
        "test-GEMINI_API_KEY"
    );
}
