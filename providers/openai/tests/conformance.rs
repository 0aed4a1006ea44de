//! The provider contract ([`modelway_testkit::conformance`]) against a mock OpenAI
//! upstream, for the plain `openai-compatible` kind and for OpenRouter (whose
//! preset rewrites requests).
#![allow(clippy::unwrap_used)]

use modelway_openai::OpenAiFactory;
use modelway_testkit::conformance::{assert_conforms, Subject, Upstream, Wire};
use modelway_testkit::MockUpstream;

#[tokio::test]
async fn every_openai_kind_keeps_the_provider_contract() {
    let mock = MockUpstream::start().await;
    for kind in ["openai-compatible", "openrouter"] {
        let table = format!(
            "kind = \"{kind}\"\nbase_url = \"{}\"\napi_key = \"sk-test\"\nlist_models = false",
            mock.base_url()
        );
        let factory = OpenAiFactory::for_kind(kind).unwrap();
        let subject = Subject {
            factory: &factory,
            table: &table,
            model: "gpt-4o-mini",
        };
        assert_conforms(
            subject,
            Upstream::Http {
                mock: &mock,
                wire: &Wire::OPENAI,
            },
        )
        .await;
    }
}
