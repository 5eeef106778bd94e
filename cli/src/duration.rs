//! Durations on the command line (`--ttl 3h`, `30m`, `90s`, `1h30m`, `2d`).
//!
//! Token lifetimes travel as whole seconds (`ttl_seconds`, a `u32`, where 0
//! means "the server's default"), so a duration must have a unit, be at least
//! a second and fit the field; a zero would silently become 3 hours.

/// Seconds per unit letter.
const UNITS: [(char, u64); 4] = [('s', 1), ('m', 60), ('h', 3600), ('d', 86_400)];

/// Parses `<number><unit>` groups, units `s`, `m`, `h`, `d`, into seconds.
pub(crate) fn parse_seconds(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration: use a number and a unit, e.g. 3h, 30m or 90s".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, per)) = UNITS.iter().find(|(u, _)| *u == c.to_ascii_lowercase()) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {c:?} (use s, m, h or d)"
            ));
        };
        if digits.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: {c:?} has no number before it"
            ));
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        total = n
            .checked_mul(per)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("invalid duration {text:?}: too long"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "invalid duration {text:?}: {digits} has no unit (use s, m, h or d, e.g. {digits}s)"
        ));
    }
    Ok(total)
}

/// A token lifetime for clap: a duration of at least one second that fits `u32` seconds.
pub(crate) fn parse_ttl(text: &str) -> Result<u32, String> {
    let secs = parse_seconds(text)?;
    if secs == 0 {
        return Err(format!("invalid duration {text:?}: must be at least 1s"));
    }
    u32::try_from(secs).map_err(|_| format!("invalid duration {text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        assert_eq!(parse_seconds("3h"), Ok(3 * 3600));
        assert_eq!(parse_seconds("30m"), Ok(1800));
        assert_eq!(parse_seconds("90s"), Ok(90));
        assert_eq!(parse_seconds("2d"), Ok(2 * 86_400));
        assert_eq!(parse_seconds("1h30m"), Ok(5400));
        assert_eq!(parse_seconds(" 1H "), Ok(3600));
        assert_eq!(parse_ttl("3h"), Ok(10_800));
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, want) in [
            ("", "empty duration"),
            ("90", "90 has no unit"),
            ("3w", "unknown unit 'w'"),
            ("h", "has no number"),
            ("1h-", "unknown unit '-'"),
            ("99999999999999999999s", "number too large"),
        ] {
            let err = parse_seconds(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert!(parse_ttl("0s").unwrap_err().contains("at least 1s"));
        assert!(parse_ttl("50000d").unwrap_err().contains("too long"));
    }
}
