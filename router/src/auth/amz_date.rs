//! `X-Amz-Date` (`YYYYMMDDTHHMMSSZ`, UTC) to and from Unix seconds, and the 5-minute window.
//! Written out (days from the civil date) to keep a date library off the request path.

use std::time::{SystemTime, UNIX_EPOCH};

use super::AuthError;

/// Unix seconds of `now` (before 1970 counts as 0: no clock is that wrong).
pub fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses `YYYYMMDDTHHMMSSZ`; `None` for anything else.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(4..6)?, number(6..8)?);
    let (hour, minute, second) = (number(9..11)?, number(11..13)?, number(13..15)?);
    let valid = (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && hour < 24
        && minute < 60
        && second < 61;
    valid.then(|| days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Formats Unix seconds as `YYYYMMDDTHHMMSSZ`.
pub fn format(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Refuses a signing time more than `max_skew` seconds from `now`, with AWS's message.
pub fn check_skew(signed: i64, now: i64, max_skew: i64) -> Result<(), AuthError> {
    if signed < now - max_skew {
        Err(AuthError::Expired {
            signed: format(signed),
            now: format(now),
            limit: format(now - max_skew),
        })
    } else if signed > now + max_skew {
        Err(AuthError::NotYetCurrent {
            signed: format(signed),
            now: format(now),
            limit: format(now + max_skew),
        })
    } else {
        Ok(())
    }
}

// Howard Hinnant's algorithms (proleptic Gregorian calendar).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_known_instants() {
        assert_eq!(parse("19700101T000000Z"), Some(0));
        assert_eq!(parse("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse("20240229T235959Z"), Some(1_709_251_199));
        for s in [0, 951_782_400, 1_709_251_199, 4_102_444_800] {
            assert_eq!(parse(&format(s)), Some(s));
        }
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "20150830T123600",
            "2015-08-30T12:36:00Z",
            "20151330T123600Z",
            "20150830T253600Z",
            "2015083OT123600Z",
            "+0150830T123600Z",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_window_is_five_minutes_either_way_with_aws_messages() {
        let now = parse("20261201T120000Z").unwrap_or_default();
        assert!(check_skew(now - 300, now, 300).is_ok());
        assert!(check_skew(now + 300, now, 300).is_ok());
        let old = check_skew(now - 600, now, 300).unwrap_err();
        assert_eq!(
            old.message(),
            "Signature expired: 20261201T115000Z is now earlier than 20261201T115500Z (20261201T120000Z - 5 min.)"
        );
        let ahead = check_skew(now + 301, now, 300).unwrap_err();
        assert_eq!(
            ahead.message(),
            "Signature not yet current: 20261201T120501Z is still later than 20261201T120500Z (20261201T120000Z + 5 min.)"
        );
    }
}
