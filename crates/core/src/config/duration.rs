//! Wall-time durations as users write them (`11h30m`, `90m`, `1.5h`, `3600`).
//!
//! Used by `train.max_wall_time`; a bare number is seconds.

use std::time::Duration;

use super::error::ConfigError;

/// Parses `11h30m`, `90m`, `45s`, `1h`, `1.5h`, `2d`, `1h 30m` or a bare number of seconds.
///
/// Units: `d`, `h`, `m` (minutes), `s`; parts may repeat in any order and are added up.
/// Negative, empty or non-finite values are errors.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    let err = |reason: &str| ConfigError::Duration {
        value: text.into(),
        reason: reason.into(),
    };
    let t = text.trim().to_lowercase();
    if t.is_empty() {
        return Err(err("it is empty"));
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs).ok_or_else(|| err("seconds must be a finite number >= 0"));
    }
    let mut total = 0.0f64;
    let mut rest = t.as_str();
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err("expected a number before each unit"));
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err("bad number"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "d" | "day" | "days" => 86_400.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "" => return Err(err("a unit (d, h, m or s) is missing after a number")),
            _ => return Err(err("unknown unit; use d, h, m or s")),
        };
        total += number * factor;
        rest = rest[unit_len..].trim_start();
    }
    seconds(total).ok_or_else(|| err("the total must be a finite number of seconds"))
}

fn seconds(s: f64) -> Option<Duration> {
    (s.is_finite() && s >= 0.0)
        .then(|| Duration::try_from_secs_f64(s).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let secs = |s: &str| parse_duration(s).unwrap().as_secs_f64();
        assert_eq!(secs("11h30m"), 41_400.0);
        assert_eq!(secs("90m"), 5_400.0);
        assert_eq!(secs("45s"), 45.0);
        assert_eq!(secs("1h"), 3_600.0);
        assert_eq!(secs("3600"), 3_600.0);
        assert_eq!(secs("1.5h"), 5_400.0);
        assert_eq!(secs("1h 30m 15s"), 5_415.0);
        assert_eq!(secs("2d"), 172_800.0);
        assert_eq!(secs(" 10M "), 600.0);
    }

    #[test]
    fn errors() {
        for bad in ["", "abc", "5x", "h", "1h30", "-5", "-1h", "1..5h", "inf"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
            assert!(e.contains("11h30m"), "{bad}: {e}");
        }
    }
}
