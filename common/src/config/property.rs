//! librdkafka property values in config: a string, a number, a boolean, or a secret
//! reference (`"sasl.password" = { env = "KAFKA_PASSWORD" }`).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{Environment, SecretRef};

/// A librdkafka property value: a string, a number, a boolean, or a secret reference.
#[derive(Clone, PartialEq)]
pub enum PropertyValue {
    Plain(String),
    Secret(SecretRef),
}

impl fmt::Debug for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::Plain(s) => write!(f, "{s:?}"),
            PropertyValue::Secret(r) => r.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for PropertyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PropertyValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string, number, boolean, or a secret reference like { env = \"NAME\" }",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<PropertyValue, E> {
                Ok(PropertyValue::Plain(s.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PropertyValue, E> {
                Ok(PropertyValue::Plain(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PropertyValue, E> {
                Ok(PropertyValue::Plain(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<PropertyValue, E> {
                Ok(PropertyValue::Plain(n.to_string()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<PropertyValue, E> {
                Ok(PropertyValue::Plain(b.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PropertyValue, A::Error> {
                SecretRef::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PropertyValue::Secret)
            }
        }
        d.deserialize_any(V)
    }
}

impl PropertyValue {
    /// The value to hand librdkafka, and whether it is a secret (to keep out of logs).
    pub fn resolve(&self, env: &Environment) -> Result<(String, bool), super::SecretError> {
        match self {
            PropertyValue::Plain(v) => Ok((v.clone(), false)),
            PropertyValue::Secret(r) => r
                .resolve(env)
                .map(|s| (String::from_utf8_lossy(s.expose()).into_owned(), true)),
        }
    }
}
