//! UTC calendar time from Unix seconds, for what grace writes for people
//! (the status page, certificate messages) without a date crate.

/// A UTC date and time of day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub(crate) year: i64,
    pub(crate) month: i64,
    pub(crate) day: i64,
    pub(crate) hour: i64,
    pub(crate) minute: i64,
    pub(crate) second: i64,
}

impl Civil {
    /// The proleptic Gregorian date and time of `unix` seconds (before 1970
    /// too), by H. Hinnant's days-to-civil algorithm.
    pub(crate) fn from_unix(unix: i64) -> Self {
        let (days, secs) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        Civil {
            year: yoe + era * 400 + i64::from(month <= 2),
            month,
            day,
            hour: secs / 3600,
            minute: secs % 3600 / 60,
            second: secs % 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Civil;

    fn ymd_hms(unix: i64) -> [i64; 6] {
        let c = Civil::from_unix(unix);
        [c.year, c.month, c.day, c.hour, c.minute, c.second]
    }

    #[test]
    fn dates_are_utc_and_gregorian() {
        assert_eq!(ymd_hms(0), [1970, 1, 1, 0, 0, 0]);
        assert_eq!(ymd_hms(951_782_400), [2000, 2, 29, 0, 0, 0]);
        assert_eq!(ymd_hms(1_795_791_600), [2026, 11, 27, 15, 0, 0]);
        assert_eq!(ymd_hms(-1), [1969, 12, 31, 23, 59, 59]);
    }
}
