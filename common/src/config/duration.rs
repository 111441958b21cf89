//! Durations in config: strings with units (`"250ms"`, `"5s"`, `"2m"`, `"1h 30m"`), or
//! ISO-8601 (`"PT2M"`), the forms Kestra and StackStorm users already write.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A configured duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub const fn from_secs(secs: u64) -> Self {
        ConfigDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        ConfigDuration(Duration::from_millis(ms))
    }

    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h 30m"` or ISO-8601 `"PT2M"`, `"P1DT2H"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('P') || s.starts_with('p') {
        return parse_iso8601(s);
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it with a unit, like \"5s\""))
}

fn parse_iso8601(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not an ISO-8601 duration such as \"PT2M\" or \"P1DT2H\"");
    let upper = s.to_ascii_uppercase();
    let rest = &upper[1..];
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return Err(bad()),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut seen_any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' || c == ',' {
                number.push(if c == ',' { '.' } else { c });
                continue;
            }
            let pos = units[next_unit..]
                .iter()
                .position(|(u, _)| *u == c)
                .ok_or_else(bad)?;
            let value: f64 = number.parse().map_err(|_| bad())?;
            total += value * units[next_unit + pos].1;
            next_unit += pos + 1;
            number.clear();
            seen_any = true;
        }
        if number.is_empty() {
            Ok(())
        } else {
            Err(bad())
        }
    };
    take(date, &[('W', 604_800.0), ('D', 86_400.0)])?;
    if let Some(time) = time {
        take(time, &[('H', 3_600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if !seen_any || !total.is_finite() || total > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string with a unit, like \"5s\" or \"PT2M\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ConfigDuration, E> {
                parse(s).map(ConfigDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_iso8601() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("PT2M").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("PT0.5S").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("P1DT2H").unwrap(), Duration::from_secs(93_600));
        assert_eq!(parse("P1W").unwrap(), Duration::from_secs(604_800));
    }

    #[test]
    fn rejects_bare_numbers_and_garbage() {
        for bad in ["5", "", "PT", "P", "PTM", "PT2X", "P2H", "PT2S3M", "fast"] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse("5").unwrap_err().contains("with a unit"));
    }
}
