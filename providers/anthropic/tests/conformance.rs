//! The provider contract ([`modelway_testkit::conformance`]) against a mock Anthropic
//! upstream.

use modelway_anthropic::AnthropicFactory;
use modelway_testkit::conformance::{assert_conforms, Subject, Upstream, Wire};
use modelway_testkit::MockUpstream;

#[tokio::test]
async fn anthropic_keeps_the_provider_contract() {
    let mock = MockUpstream::start().await;
    let table = format!(
        "kind = \"anthropic\"\nbase_url = \"http://{}\"\napi_key = \"sk-ant-test\"",
        mock.addr()
    );
    let subject = Subject {
        factory: &AnthropicFactory,
        table: &table,
        model: "claude-sonnet-4-5",
    };
    assert_conforms(
        subject,
        Upstream::Http {
            mock: &mock,
            wire: &Wire::ANTHROPIC,
        },
    )
    .await;
}
