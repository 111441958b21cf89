//! The HMAC verifier against each provider's own published example (or, where a provider
//! publishes none, a vector made with its official SDK), plus properties over arbitrary
//! input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::hmac::{KeyInit, Mac};
use base64::Engine;
use hookgate_common::config::{Environment, Problems};
use proptest::prelude::*;

use super::*;

fn build(toml_text: &str) -> Hmac {
    let cfg: HmacConfig = toml::from_str(toml_text).unwrap();
    let mut p = Problems::default();
    let built = cfg.build("auth", &Environment::default(), &mut p);
    assert!(p.is_empty(), "{p:?}");
    built.unwrap()
}

fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::post(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn github_published_example() {
    // docs.github.com, "Validating webhook deliveries": secret, payload and signature.
    let h = build("preset = \"github\"\nsecrets = [{ value = \"It's a Secret to Everybody\" }]");
    let p = parts(
        "/hooks/gh",
        &[
            (
                "x-hub-signature-256",
                "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ],
    );
    let v = h.verify(&p, b"Hello, World!", SystemTime::now()).unwrap();
    assert_eq!(v.signed.as_deref(), Some("body"));
    assert_eq!(
        v.delivery_id.as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    assert_eq!(
        h.verify(&p, b"Hello, World?", SystemTime::now()),
        Err(Failure::Mismatch)
    );
}

const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";

#[test]
fn slack_published_example() {
    // api.slack.com, "Verifying requests from Slack": signing secret, timestamp, body and
    // signature. The injected clock is the example's own time.
    let h =
        build("preset = \"slack\"\nsecrets = [{ value = \"8f742231b10e8888abcd99yyyzzz85a5\" }]");
    let p = parts(
        "/hooks/slack",
        &[
            ("x-slack-request-timestamp", "1531420618"),
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            ),
        ],
    );
    let v = h
        .verify(&p, SLACK_BODY.as_bytes(), at(1_531_420_618 + 30))
        .unwrap();
    assert_eq!(v.signed.as_deref(), Some("body,timestamp"));
    // Five minutes and one second later, in either direction, it is refused.
    assert_eq!(
        h.verify(&p, SLACK_BODY.as_bytes(), at(1_531_420_618 + 301)),
        Err(Failure::Timestamp)
    );
    assert_eq!(
        h.verify(&p, SLACK_BODY.as_bytes(), at(1_531_420_618 - 301)),
        Err(Failure::Timestamp)
    );
}

#[test]
fn standard_webhooks_published_example() {
    // standardwebhooks.com / Svix docs: secret, id, timestamp, payload and signature.
    let h = build(
        "preset = \"standard_webhooks\"\nsecrets = [{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }]",
    );
    let p = parts(
        "/hooks/svix",
        &[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            // Several signatures: any one matching passes.
            (
                "webhook-signature",
                "v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,xyz",
            ),
        ],
    );
    let v = h
        .verify(&p, br#"{"test": 2432232314}"#, at(1_614_265_330))
        .unwrap();
    assert_eq!(v.signed.as_deref(), Some("body,id,timestamp"));
    assert_eq!(
        v.delivery_id.as_deref(),
        Some("msg_p5jXN8AQM9LWM0D4loKWxJek")
    );
}

#[test]
fn twilio_published_example() {
    // twilio.com security docs (and twilio-php's validation guide): auth token `12345`,
    // URL https://mycompany.com/myapp.php?foo=1&bar=2, five POST parameters.
    let h = build(
        "preset = \"twilio\"\npublic_url = \"https://mycompany.com\"\nsecrets = [{ value = \"12345\" }]",
    );
    let p = parts(
        "/myapp.php?foo=1&bar=2",
        &[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
    );
    let body = "To=%2B18005551212&CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309";
    let v = h.verify(&p, body.as_bytes(), SystemTime::now()).unwrap();
    assert_eq!(v.signed.as_deref(), Some("body,url"));
    let moved = parts(
        "/myapp.php?foo=1&bar=3",
        &[("x-twilio-signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
    );
    assert_eq!(
        h.verify(&moved, body.as_bytes(), SystemTime::now()),
        Err(Failure::Mismatch)
    );
}

#[test]
fn twilio_sdk_vector_with_a_repeated_parameter() {
    // Made with twilio-node 5.13.1 (`getExpectedTwilioSignature`) and twilio-python 9.13.0
    // (`RequestValidator.compute_signature`), which agree: auth token `12345`, URL
    // https://mycompany.com/hooks/sms, `MediaUrl` three times (one value twice), out of order.
    let h = build(
        "preset = \"twilio\"\npublic_url = \"https://mycompany.com\"\nsecrets = [{ value = \"12345\" }]",
    );
    let p = parts(
        "/hooks/sms",
        &[("x-twilio-signature", "mGgkdZSt60ttoo36moJYQHGOh/A=")],
    );
    let body = "MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fz.jpg&Body=two+pictures\
                &MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fa.jpg&NumMedia=2\
                &MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fz.jpg";
    assert!(h.verify(&p, body.as_bytes(), SystemTime::now()).is_ok());
    // The order of the parameters in the body does not matter; their values do.
    let reordered = "NumMedia=2&MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fa.jpg\
                     &MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fz.jpg&Body=two+pictures";
    assert!(h
        .verify(&p, reordered.as_bytes(), SystemTime::now())
        .is_ok());
    let changed = "NumMedia=2&MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fb.jpg\
                   &MediaUrl=https%3A%2F%2Fapi.twilio.com%2Fz.jpg&Body=two+pictures";
    assert_eq!(
        h.verify(&p, changed.as_bytes(), SystemTime::now()),
        Err(Failure::Mismatch)
    );
}

#[test]
fn stripe_sdk_vector() {
    // Made with stripe-python 16.1.0:
    // WebhookSignature.generate_signature_header(payload, "whsec_test_secret", 1700000000).
    // Stripe uses the `whsec_` secret as text.
    let h = build("preset = \"stripe\"\nsecrets = [{ value = \"whsec_test_secret\" }]");
    let body = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    let p = parts(
        "/hooks/stripe",
        &[(
            "stripe-signature",
            "t=1700000000,v1=1ee8dd662a91c944c5fc90522bd8a6c2fa5ad2f05377bafef52d694497464c9a",
        )],
    );
    let v = h.verify(&p, body, at(1_700_000_100)).unwrap();
    assert_eq!(v.signed.as_deref(), Some("body,timestamp"));
    assert_eq!(
        v.delivery_id.as_deref(),
        Some("evt_1NG8Du2eZvKYlo2CUI79vXWy")
    );
    assert_eq!(
        h.verify(&p, body, at(1_700_000_400)),
        Err(Failure::Timestamp)
    );
}

#[test]
fn shopify_sdk_vector() {
    // Made with @shopify/shopify-api 11.14.1: createSHA256HMAC(secret, body), the function
    // its webhook validation uses.
    let h = build("preset = \"shopify\"\nsecrets = [{ value = \"shpss_test_secret\" }]");
    let body = br#"{"id":820982911946154508,"email":"jon@example.com","topic":"orders/create"}"#;
    let p = parts(
        "/hooks/shopify",
        &[
            (
                "x-shopify-hmac-sha256",
                "sTt9RaOhi2L8h63HdzGr3K+oErwk988IFB3KhRdvUIU=",
            ),
            (
                "x-shopify-webhook-id",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
        ],
    );
    let v = h.verify(&p, body, SystemTime::now()).unwrap();
    assert_eq!(
        v.delivery_id.as_deref(),
        Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
    );
}

#[test]
fn what_the_signer_signs_the_verifier_accepts() {
    // Slack's delivery id is a member of JSON event bodies; a slash command's form body
    // has none and is still signed and accepted.
    let slack = build("preset = \"slack\"\nsecrets = [{ value = \"s\" }]");
    let now = SystemTime::now();
    for body in [
        SLACK_BODY.as_bytes(),
        br#"{"event_id":"Ev1","type":"event_callback"}"#,
    ] {
        let headers = slack.sign_now("POST", "/hooks/slack", body, now).unwrap();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let v = slack
            .verify(&parts("/hooks/slack", &headers), body, now)
            .unwrap();
        let json = body.starts_with(b"{");
        assert_eq!(v.delivery_id.as_deref(), json.then_some("Ev1"));
    }
}

#[test]
fn failures_are_classified() {
    let h = build("preset = \"github\"\nsecrets = [{ value = \"s\" }]");
    let now = SystemTime::now();
    let github = |sig: &str| h.verify(&parts("/", &[("x-hub-signature-256", sig)]), b"x", now);
    assert_eq!(h.verify(&parts("/", &[]), b"x", now), Err(Failure::Missing));
    // A sign is not a hex digit ("+a" would parse as a number).
    for bad in [
        "sha1=abcd",
        "sha256=zz",
        "sha256=",
        "garbage",
        "sha256=+a",
        "sha256=é",
    ] {
        assert_eq!(github(bad), Err(Failure::Malformed), "{bad}");
    }
    assert_eq!(
        github(&format!("sha256={}", "00".repeat(32))),
        Err(Failure::Mismatch)
    );
    // Longer than any tag: well formed, so a mismatch; the longest hex accepted is 256
    // digits.
    for len in [33, 65, 128] {
        let sig = format!("sha256={}", "ab".repeat(len));
        assert_eq!(github(&sig), Err(Failure::Mismatch), "{len}");
    }
    assert_eq!(
        github(&format!("sha256={}", "ab".repeat(129))),
        Err(Failure::Malformed)
    );
    let svix = build("preset = \"standard_webhooks\"\nsecrets = [{ value = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\" }]");
    let svix_parts = |sig: &str| {
        parts(
            "/",
            &[
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1614265330"),
                ("webhook-signature", sig),
            ],
        )
    };
    let long = base64::engine::general_purpose::STANDARD.encode([7u8; 200]);
    let p = svix_parts(&format!("v1,{long}"));
    assert_eq!(
        svix.verify(&p, b"x", at(1_614_265_330)),
        Err(Failure::Mismatch)
    );
    let p = svix_parts(&format!("v1,{}!", &long[..long.len() - 1]));
    assert_eq!(
        svix.verify(&p, b"x", at(1_614_265_330)),
        Err(Failure::Malformed)
    );
    let slack = build("preset = \"slack\"\nsecrets = [{ value = \"s\" }]");
    let p = parts(
        "/",
        &[
            ("x-slack-signature", "v0=00"),
            ("x-slack-request-timestamp", "soon"),
        ],
    );
    assert_eq!(slack.verify(&p, b"x", now), Err(Failure::Malformed));
}

#[test]
fn rotation_accepts_old_and_new_until_the_old_expires() {
    let h = build(
        "preset = \"github\"\nsecrets = [{ value = \"old\", expires = \"2030-01-01T00:00:00Z\" }, { value = \"new\" }]",
    );
    let before = at(1_800_000_000); // 2027
    let after = at(1_900_000_000); // 2030-03
    for (secret, when, ok) in [
        (0, before, true),
        (1, before, true),
        (0, after, false),
        (1, after, true),
    ] {
        let sig = h.sign(secret, "POST", "/", b"payload", None, None).unwrap();
        let p = parts("/", &[("x-hub-signature-256", &sig)]);
        assert_eq!(
            h.verify(&p, b"payload", when).is_ok(),
            ok,
            "secret {secret}"
        );
    }
}

#[test]
fn generic_recipe_with_every_option() {
    let h = build(
        r#"secrets = [{ value = "c2VjcmV0LWJ5dGVz" }]
secret_encoding = "base64"
signature = { header = "x-sig", prefix = "v2:" }
content = "{method} {url}|{id}|{timestamp}|{body}"
timestamp = { pointer = "/sent_at" }
id = { header = "x-id" }
algorithm = "sha512"
encoding = "base64url"
tolerance = "30s"
public_url = "https://hooks.example.com/"
"#,
    );
    let body = br#"{"sent_at":1700000000,"x":1}"#;
    let sig = h
        .sign(0, "POST", "/in?a=1", body, Some("1700000000"), Some("d-1"))
        .unwrap();
    assert!(sig.starts_with("v2:"));
    let p = parts("/in?a=1", &[("x-sig", &sig), ("x-id", "d-1")]);
    let v = h.verify(&p, body, at(1_700_000_020)).unwrap();
    assert_eq!(v.signed.as_deref(), Some("body,id,method,timestamp,url"));
    assert_eq!(
        h.verify(&p, body, at(1_700_000_031)),
        Err(Failure::Timestamp)
    );
    let other_id = parts("/in?a=1", &[("x-sig", &sig), ("x-id", "d-2")]);
    assert_eq!(
        h.verify(&other_id, body, at(1_700_000_000)),
        Err(Failure::Mismatch)
    );
}

#[test]
fn recipes_that_cannot_work_are_refused_at_load() {
    for (toml_text, expect) in [
        ("secrets = [{ value = \"s\" }]", "signature header"),
        ("signature = { header = \"x\" }\ncontent = \"{timestamp}.{body}\"\nsecrets = [{ value = \"s\" }]", "timestamp"),
        ("signature = { header = \"x\" }\ncontent = \"{nope}\"\nsecrets = [{ value = \"s\" }]", "not a placeholder"),
        ("signature = { header = \"x\" }\ncontent = \"{timestamp}\"\nsecrets = [{ value = \"s\" }]", "does not sign the body"),
        ("preset = \"twilio\"\nsecrets = [{ value = \"s\" }]", "public_url"),
        ("signature = { header = \"x\", prefix = \"a\", field = \"v1\" }\nsecrets = [{ value = \"s\" }]", "different layouts"),
        ("preset = \"standard_webhooks\"\nsecrets = [{ value = \"whsec_!!!\" }]", "secret_encoding"),
        ("preset = \"github\"\nsecrets = []", "at least one secret"),
        ("preset = \"github\"\ndedupe_capacity = 0\nsecrets = [{ value = \"s\" }]", "auth.dedupe_capacity"),
        ("preset = \"stripe\"\ntolerance = \"0s\"\nsecrets = [{ value = \"s\" }]", "auth.tolerance"),
        ("preset = \"github\"\ndedupe_window = \"0s\"\nsecrets = [{ value = \"s\" }]", "auth.dedupe_window"),
        ("preset = \"github\"\ndedupe_capacity = 10000001\nsecrets = [{ value = \"s\" }]", "10000001 is out of range"),
    ] {
        let cfg: HmacConfig = toml::from_str(toml_text).unwrap();
        let mut p = Problems::default();
        let built = cfg.build("auth", &Environment::default(), &mut p);
        assert!(built.is_none(), "{toml_text}");
        let text = format!("{p:?}");
        assert!(text.contains(expect), "{toml_text}: {text}");
    }
}

fn generic() -> Hmac {
    build(
        "secrets = [{ value = \"k\" }]\nsignature = { header = \"x-sig\", field = \"v1\" }\ntimestamp = { field = \"t\" }\ncontent = \"{timestamp}.{body}\"",
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn sign_then_verify_holds(body in proptest::collection::vec(any::<u8>(), 0..2048), ts in 0u64..4_000_000_000) {
        let h = generic();
        let sig = h.sign(0, "POST", "/", &body, Some(&ts.to_string()), None).unwrap();
        let p = parts("/", &[("x-sig", &sig)]);
        prop_assert!(h.verify(&p, &body, at(ts)).is_ok());
    }

    #[test]
    fn any_change_is_rejected(
        body in proptest::collection::vec(any::<u8>(), 1..512),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        ts in 1_000_000u64..4_000_000_000,
        which in 0u8..3,
    ) {
        let h = generic();
        let sig = h.sign(0, "POST", "/", &body, Some(&ts.to_string()), None).unwrap();
        let (mut body2, mut ts2, mut sig2) = (body.clone(), ts, sig.clone());
        match which {
            0 => { let i = flip.index(body2.len()); body2[i] ^= 1 << bit; }
            1 => ts2 += 1 + u64::from(bit),
            _ => {
                // Change one hex digit of the decoded signature.
                let hex_start = sig2.find("v1=").unwrap() + 3;
                let i = hex_start + flip.index(sig2.len() - hex_start);
                let c = sig2.as_bytes()[i];
                let replacement = if c == b'0' { '1' } else { '0' };
                sig2.replace_range(i..i + 1, &replacement.to_string());
            }
        }
        let header = if which == 1 { sig2.replacen(&format!("t={ts}"), &format!("t={ts2}"), 1) } else { sig2 };
        let p = parts("/", &[("x-sig", &header)]);
        prop_assert!(h.verify(&p, &body2, at(ts)).is_err());
    }

    #[test]
    fn no_panic_for_any_header_or_timestamp(value in "\\PC{0,200}", ts in any::<i64>()) {
        let h = generic();
        let now = at(1_700_000_000);
        for header in [value.clone(), format!("t={ts},v1={value}"), format!("t={value},v1=00")] {
            if let Ok(hv) = http::HeaderValue::from_str(&header) {
                let mut p = parts("/", &[]);
                p.headers.insert("x-sig", hv);
                let _ = h.verify(&p, b"body", now);
            }
        }
        for extreme in [i64::MIN, i64::MAX, -1, 0] {
            let p = parts("/", &[("x-sig", &format!("t={extreme},v1=00"))]);
            prop_assert!(h.verify(&p, b"body", now).is_err());
        }
    }

    #[test]
    fn timestamps_outside_the_tolerance_are_rejected(offset in 301i64..10_000_000, sign in any::<bool>()) {
        let h = generic();
        let now = 1_700_000_000i64;
        let ts = if sign { now + offset } else { now - offset };
        let sig = h.sign(0, "POST", "/", b"b", Some(&ts.to_string()), None).unwrap();
        let p = parts("/", &[("x-sig", &sig)]);
        prop_assert_eq!(h.verify(&p, b"b", at(now as u64)), Err(Failure::Timestamp));
    }
}

#[test]
fn a_signature_by_an_expired_secret_is_refused_as_expired() {
    let h = build(
        "preset = \"github\"\nsecrets = [{ value = \"new-secret\" }, { value = \"old-secret\", expires = \"2026-01-01T02:00:00+02:00\" }]",
    );
    let body = b"{\"n\":1}";
    let signed_by = |secret: &str| {
        let mut mac =
            <::hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        let tag: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        parts(
            "/hooks/gh",
            &[("x-hub-signature-256", &format!("sha256={tag}"))],
        )
    };
    // The old secret expired at midnight UTC on 1 January 2026 (02:00 at +02:00).
    let before = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
    let after = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    assert!(h.verify(&signed_by("old-secret"), body, before).is_ok());
    assert_eq!(
        h.verify(&signed_by("old-secret"), body, after),
        Err(Failure::Expired)
    );
    assert!(h.verify(&signed_by("new-secret"), body, after).is_ok());
    assert_eq!(
        h.verify(&signed_by("other"), body, after),
        Err(Failure::Mismatch)
    );
}
