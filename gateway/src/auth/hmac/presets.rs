//! Provider presets: the recipe each provider documents for its webhook signatures, and an
//! ack timeout below the provider's own deadline, so a slow broker is answered 503 before
//! the provider gives up on its own.

use std::time::Duration;

use serde::Deserialize;

use super::{Algorithm, Encoding, SecretEncoding, SignatureConfig, ValueSource};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// `X-Hub-Signature-256: sha256=<hex>` over the body; delivery id `X-GitHub-Delivery`.
    Github,
    /// `Stripe-Signature: t=…,v1=<hex>` over `{t}.{body}`; the `whsec_` secret is used as
    /// text; the delivery id is the body's `/id`.
    Stripe,
    /// `X-Slack-Signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Slack,
    /// `X-Shopify-Hmac-Sha256: <base64>` over the body; id `X-Shopify-Webhook-Id`.
    Shopify,
    /// Standard Webhooks (Svix): `webhook-signature: v1,<base64> …` over
    /// `{id}.{timestamp}.{body}` with a base64 `whsec_` secret.
    StandardWebhooks,
    /// `X-Twilio-Signature: <base64>` HMAC-SHA1 over the public URL and the form
    /// parameters sorted by name.
    Twilio,
    /// `x-zm-signature: v0=<hex>` over `v0:{timestamp}:{body}`.
    Zoom,
}

/// Everything the generic recipe needs.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub signature: SignatureConfig,
    pub content: String,
    pub timestamp: Option<ValueSource>,
    pub id: Option<ValueSource>,
    pub algorithm: Algorithm,
    pub encoding: Encoding,
    pub secret_encoding: SecretEncoding,
    pub tolerance: Duration,
    pub ack_timeout: Duration,
}

impl Default for Recipe {
    fn default() -> Self {
        Recipe {
            signature: SignatureConfig::default(),
            content: "{body}".into(),
            timestamp: None,
            id: None,
            algorithm: Algorithm::Sha256,
            encoding: Encoding::Hex,
            secret_encoding: SecretEncoding::Literal,
            tolerance: super::DEFAULT_TOLERANCE,
            ack_timeout: crate::config::DEFAULT_ACK_TIMEOUT,
        }
    }
}

fn header(name: &str) -> SignatureConfig {
    SignatureConfig {
        header: name.into(),
        ..SignatureConfig::default()
    }
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Github => "github",
            Preset::Stripe => "stripe",
            Preset::Slack => "slack",
            Preset::Shopify => "shopify",
            Preset::StandardWebhooks => "standard_webhooks",
            Preset::Twilio => "twilio",
            Preset::Zoom => "zoom",
        }
    }

    pub fn recipe(self) -> Recipe {
        let base = Recipe::default();
        match self {
            // GitHub gives up after 10 s.
            Preset::Github => Recipe {
                signature: SignatureConfig {
                    prefix: Some("sha256=".into()),
                    ..header("x-hub-signature-256")
                },
                id: Some(ValueSource::Header("x-github-delivery".into())),
                ack_timeout: Duration::from_secs(8),
                ..base
            },
            Preset::Stripe => Recipe {
                signature: SignatureConfig {
                    field: Some("v1".into()),
                    ..header("stripe-signature")
                },
                content: "{timestamp}.{body}".into(),
                timestamp: Some(ValueSource::Field("t".into())),
                id: Some(ValueSource::Pointer("/id".into())),
                ack_timeout: Duration::from_secs(8),
                ..base
            },
            // Slack expects an answer within 3 s.
            Preset::Slack => Recipe {
                signature: SignatureConfig {
                    prefix: Some("v0=".into()),
                    ..header("x-slack-signature")
                },
                content: "v0:{timestamp}:{body}".into(),
                timestamp: Some(ValueSource::Header("x-slack-request-timestamp".into())),
                id: Some(ValueSource::Pointer("/event_id".into())),
                ack_timeout: Duration::from_secs(2),
                ..base
            },
            // Shopify allows 5 s.
            Preset::Shopify => Recipe {
                signature: header("x-shopify-hmac-sha256"),
                encoding: Encoding::Base64,
                id: Some(ValueSource::Header("x-shopify-webhook-id".into())),
                ack_timeout: Duration::from_secs(4),
                ..base
            },
            // Svix waits 15 s.
            Preset::StandardWebhooks => Recipe {
                signature: SignatureConfig {
                    version: Some("v1".into()),
                    ..header("webhook-signature")
                },
                content: "{id}.{timestamp}.{body}".into(),
                timestamp: Some(ValueSource::Header("webhook-timestamp".into())),
                id: Some(ValueSource::Header("webhook-id".into())),
                encoding: Encoding::Base64,
                secret_encoding: SecretEncoding::Whsec,
                ack_timeout: Duration::from_secs(10),
                ..base
            },
            // Zoom expects an answer within 3 s.
            Preset::Zoom => Recipe {
                signature: SignatureConfig {
                    prefix: Some("v0=".into()),
                    ..header("x-zm-signature")
                },
                content: "v0:{timestamp}:{body}".into(),
                timestamp: Some(ValueSource::Header("x-zm-request-timestamp".into())),
                ack_timeout: Duration::from_secs(2),
                ..base
            },
            // Twilio waits 15 s.
            Preset::Twilio => Recipe {
                signature: header("x-twilio-signature"),
                content: "{url}{form}".into(),
                id: Some(ValueSource::Header("i-twilio-idempotency-token".into())),
                algorithm: Algorithm::Sha1,
                encoding: Encoding::Base64,
                ack_timeout: Duration::from_secs(10),
                ..base
            },
        }
    }
}
