//! The provider contract ([`modelway_testkit::conformance`]) against a mock Gemini
//! upstream.

use modelway_gemini::GeminiFactory;
use modelway_testkit::conformance::{assert_conforms, Subject, Upstream, Wire};
use modelway_testkit::MockUpstream;

#[tokio::test]
async fn gemini_keeps_the_provider_contract() {
    let mock = MockUpstream::start().await;
    let table = format!(
        "kind = \"gemini\"\nbase_url = \"http://{}\"\napi_key = \"AIza-test\"",
        mock.addr()
    );
    let subject = Subject {
        factory: &GeminiFactory,
        table: &table,
        model: "gemini-2.5-flash",
    };
    assert_conforms(
        subject,
        Upstream::Http {
            mock: &mock,
            wire: &Wire::GEMINI,
        },
    )
    .await;
}
