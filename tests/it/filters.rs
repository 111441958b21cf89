//! Ingress filters against the real broker: a request the hook's filter does not match is
//! answered 204 and never reaches the topic, one it matches is published as usual,
//! payload text is never evaluated, filtered requests are counted per hook, and a filter
//! that cannot be evaluated lets the request through and is counted.

use crate::support::{brokers, http, kafka, metric, topic, GatewayBuilder};

async fn post(url: &str, event: &str, body: &str) -> http::Reply {
    http::post(url)
        .content_type("application/json")
        .header("x-github-event", event)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_the_filter_does_not_match_get_204_and_are_not_published() {
    let events = topic("filtered");
    let injected = topic("filtered-injection");
    let failing = topic("filtered-failing");
    let gw = GatewayBuilder::tansu()
        .kafka("partitions = 1")
        .hook(&format!(
            "id = \"gh-filter\"\ntopic = \"{events}\"\nauth = {{ scheme = \"none\" }}\n\
             filter = \"trigger.headers['x-github-event'][0] == 'pull_request' and \
             trigger.body.action in ['opened', 'reopened']\""
        ))
        .hook(&format!(
            "id = \"calc-filter\"\ntopic = \"{injected}\"\nauth = {{ scheme = \"none\" }}\n\
             filter = {{ criteria = {{ \"trigger.body.n\" = {{ equals = 49 }} }} }}"
        ))
        .hook(&format!(
            "id = \"broken-filter\"\ntopic = \"{failing}\"\nauth = {{ scheme = \"none\" }}\n\
             filter = \"trigger.body.n + 'x' == 1\""
        ))
        .start()
        .await;
    let url = gw.hook_url("/hooks/gh-filter");

    let opened = post(&url, "pull_request", r#"{"action":"opened","number":7}"#).await;
    assert_eq!(opened.status, 202);
    let push = post(&url, "push", r#"{"ref":"refs/heads/main"}"#).await;
    assert_eq!(push.status, 204);
    assert!(push.body.is_empty());
    let closed = post(&url, "pull_request", r#"{"action":"closed","number":7}"#).await;
    assert_eq!(closed.status, 204);
    // A field the filter reads is missing: no match.
    let bare = post(&url, "pull_request", "{}").await;
    assert_eq!(bare.status, 204);
    // A body that is not JSON is still refused as such, before the filter.
    let broken = post(&url, "pull_request", "{").await;
    assert_eq!(broken.status, 400);
    let reopened = post(&url, "pull_request", r#"{"action":"reopened","number":8}"#)
        .await
        .event_id();

    let ids = kafka::ids_until(&brokers(), &events, &reopened);
    assert_eq!(ids, vec![opened.event_id(), reopened]);

    // `{{ 7*7 }}` in a payload is eight characters of text, never 49.
    let calc = gw.hook_url("/hooks/calc-filter");
    let template = post(&calc, "x", r#"{"n":"{{ 7*7 }}"}"#).await;
    assert_eq!(template.status, 204);
    let number = post(&calc, "x", r#"{"n":49}"#).await.event_id();
    let ids = kafka::ids_until(&brokers(), &injected, &number);
    assert_eq!(ids, vec![number], "only the real 49 is published");

    // Adding text to a number fails: the request is published, and the failure counted.
    let through = post(&gw.hook_url("/hooks/broken-filter"), "x", r#"{"n":1}"#)
        .await
        .event_id();
    assert_eq!(
        kafka::ids_until(&brokers(), &failing, &through),
        vec![through]
    );
    let errors = metric(
        &gw.admin_url,
        "hookgate_filter_errors_total{hook=\"broken-filter\"}",
    )
    .await;
    assert_eq!(errors, Some(1.0));

    let filtered = metric(
        &gw.admin_url,
        "hookgate_requests_total{hook=\"gh-filter\",outcome=\"filtered\"}",
    )
    .await;
    assert_eq!(filtered, Some(3.0));
    let accepted = metric(
        &gw.admin_url,
        "hookgate_requests_total{hook=\"gh-filter\",outcome=\"accepted\"}",
    )
    .await;
    assert_eq!(accepted, Some(2.0));
    gw.stop().await.unwrap();
}
