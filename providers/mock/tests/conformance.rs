//! The provider contract ([`modelway_testkit::conformance`]) for the in-process mock:
//! the answer rules (it has no upstream whose errors or bytes could be scripted).

use modelway_mock::MockFactory;
use modelway_testkit::conformance::{assert_conforms, Subject, Upstream};

#[tokio::test]
async fn the_mock_keeps_the_provider_contract() {
    let subject = Subject {
        factory: &MockFactory,
        table: "kind = \"mock\"\ntool_calls = true",
        model: "mock-1",
    };
    assert_conforms(subject, Upstream::InProcess).await;
}
