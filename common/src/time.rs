//! Times and durations as people write them, parsed in one place for every part of
//! hookgate: config durations and secret expiries, the consumer's criteria (`timediff_lt`,
//! timestamps in payloads), the load harness's command line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a duration with units: humantime's forms (`"250ms"`, `"5s"`, `"2m"`,
/// `"1h 30m"`), one decimal amount and a unit (`"1.5s"`, `"250us"`), or ISO-8601
/// (`"PT2M"`, `"P1DT2H"`, `"PT0.5S"`; years and months are refused, their length varies).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.starts_with('P') || s.starts_with('p') {
        return parse_iso8601(s);
    }
    humantime::parse_duration(s)
        .or_else(|e| decimal_with_unit(s).ok_or(e))
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it with a unit, like \"5s\""))
}

/// `1.5s`, `0.25h`: one decimal amount directly followed by a unit.
fn decimal_with_unit(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let seconds_per_unit = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * seconds_per_unit).ok()
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

/// Parses an RFC 3339 time, with `Z` or a numeric offset (`+02:00`); without either, the
/// time is taken as UTC.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (local, offset_secs) = match s
        .len()
        .checked_sub(6)
        .and_then(|i| s.get(i..).map(|o| (i, o)))
    {
        Some((i, o)) if (o.starts_with('+') || o.starts_with('-')) && o.as_bytes()[3] == b':' => {
            let h: u64 = o[1..3].parse().ok()?;
            let m: u64 = o[4..6].parse().ok()?;
            let secs = i64::try_from(h * 3600 + m * 60).ok()?;
            (&s[..i], if o.starts_with('+') { secs } else { -secs })
        }
        _ => (s, 0),
    };
    let local = local
        .strip_suffix('Z')
        .or_else(|| local.strip_suffix('z'))
        .unwrap_or(local);
    let utc_as_if = humantime::parse_rfc3339(&format!("{local}Z")).ok()?;
    // 10:00+02:00 is 08:00Z: subtract a positive offset.
    let shift = std::time::Duration::from_secs(offset_secs.unsigned_abs());
    if offset_secs >= 0 {
        utc_as_if.checked_sub(shift)
    } else {
        utc_as_if.checked_add(shift)
    }
}

/// Seconds since the Unix epoch, negative before it.
pub fn unix_seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_iso8601() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("PT2M").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("PT0.5S").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("P1DT2H").unwrap(),
            Duration::from_secs(93_600)
        );
        assert_eq!(parse_duration("P1W").unwrap(), Duration::from_secs(604_800));
    }

    #[test]
    fn rejects_bare_numbers_and_garbage() {
        for bad in ["5", "", "PT", "P", "PTM", "PT2X", "P2H", "PT2S3M", "fast"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(parse_duration("5").unwrap_err().contains("with a unit"));
    }

    #[test]
    fn decimal_amounts_with_a_unit() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0.5m"), Ok(Duration::from_secs(30)));
        for bad in ["1..5s", ".5s", "5.s", "1.5x", "-1s", "ten s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn expiry_times_take_offsets() {
        let z = parse_rfc3339("2027-01-31T08:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2027-01-31T10:00:00+02:00"), Some(z));
        assert_eq!(parse_rfc3339("2027-01-31T03:00:00-05:00"), Some(z));
        assert_eq!(parse_rfc3339("2027-01-31T08:00:00.000Z"), Some(z));
        assert!(parse_rfc3339("tomorrow").is_none());
        assert!(parse_rfc3339("2027-01-31").is_none());
    }
}
