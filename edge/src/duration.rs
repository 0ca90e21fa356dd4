//! Durations in flags and files: `250ms`, `10s`, `5m`, `1h`, or a bare number of seconds.

use std::time::Duration;

/// A duration that does not parse; the message says what is wrong and what would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadDuration(String);

/// Parses `250ms`, `10s`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, BadDuration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        BadDuration(format!(
            "{raw:?} is not a duration: use e.g. 500ms, 10s, 5m"
        ))
    })?;
    let seconds = |per: u64| {
        n.checked_mul(per)
            .map(Duration::from_secs)
            .ok_or_else(|| BadDuration(format!("{raw:?} is too long a duration")))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        _ => Err(BadDuration(format!(
            "{raw:?} has an unknown unit {unit:?}: use ms, s, m or h"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(
            parse_duration("18446744073709551615h").is_err(),
            "no overflow"
        );
        assert!(parse_duration("99999999999999999999999").is_err());
    }
}
