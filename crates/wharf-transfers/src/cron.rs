//! Cron expressions, as crontab(5) writes them, evaluated in UTC: five fields (minute, hour,
//! day of month, month, day of week) of `*`, numbers, ranges `A-B`, steps `/N` and lists
//! `A,B`, month and day names (`jan`, `mon`), and `@hourly`, `@daily`, `@weekly`,
//! `@monthly`, `@yearly`. As in cron, when both day fields are restricted a day matching
//! either one fires. Pure: no clock is read here.

#[cfg(test)]
use time::Month;
use time::{Date, OffsetDateTime, Time};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
    text: String,
}

/// Why an expression was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(text: &str, names: &[&str], first_name: u32) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return Some(n);
    }
    let lower = text.to_ascii_lowercase();
    names
        .iter()
        .position(|n| *n == lower)
        .map(|i| i as u32 + first_name)
}

/// The bits of one field, and whether it restricts anything (`*` does not).
fn field(
    text: &str,
    what: &str,
    low: u32,
    high: u32,
    names: &[&str],
    first_name: u32,
) -> Result<(u64, bool), CronError> {
    let bad = |why: &str| CronError(format!("{what} field {text:?}: {why}"));
    let mut bits = 0u64;
    let mut restricted = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| bad("a step is a number"))?;
                if step == 0 || step > high {
                    return Err(bad("a step is from 1 to the field's largest value"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (from, to) = if range == "*" {
            if step != 1 {
                restricted = true;
            }
            (low, high)
        } else {
            restricted = true;
            match range.split_once('-') {
                Some((a, b)) => (
                    value(a, names, first_name).ok_or_else(|| bad("not a number or name"))?,
                    value(b, names, first_name).ok_or_else(|| bad("not a number or name"))?,
                ),
                None => {
                    let v = value(range, names, first_name)
                        .ok_or_else(|| bad("not a number or name"))?;
                    (v, if part.contains('/') { high } else { v })
                }
            }
        };
        if from < low || to > high || from > to {
            return Err(bad(&format!("values go from {low} to {high}")));
        }
        let mut v = from;
        while v <= to {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, restricted))
}

impl Schedule {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Schedule, CronError> {
        let expanded = match text.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError(format!(
                "{text:?} has {} fields; give five (minute hour day-of-month month day-of-week), such as \"0 2 * * *\" for 02:00 UTC every day",
                fields.len()
            )));
        }
        let (minutes, _) = field(fields[0], "minute", 0, 59, &[], 0)?;
        let (hours, _) = field(fields[1], "hour", 0, 23, &[], 0)?;
        let (days, days_restricted) = field(fields[2], "day-of-month", 1, 31, &[], 0)?;
        let (months, _) = field(fields[3], "month", 1, 12, &MONTHS, 1)?;
        let (mut weekdays, weekdays_restricted) =
            field(fields[4], "day-of-week", 0, 7, &WEEKDAYS, 0)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
            text: text.trim().to_owned(),
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().number_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first time it fires strictly after `after` (UTC, whole minutes), within the
    /// next eight years; `None` when it never does (`0 0 31 2 *`).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(time::UtcOffset::UTC);
        let mut date = after.date();
        for _ in 0..(366 * 8) {
            if self.months & (1 << u8::from(date.month())) != 0 && self.day_matches(date) {
                for hour in 0..24u8 {
                    if self.hours & (1 << hour) == 0 {
                        continue;
                    }
                    for minute in 0..60u8 {
                        if self.minutes & (1 << minute) == 0 {
                            continue;
                        }
                        let at = Time::from_hms(hour, minute, 0).ok()?;
                        let when = date.with_time(at).assume_utc();
                        if when > after {
                            return Some(when);
                        }
                    }
                }
            }
            date = date.next_day()?;
        }
        None
    }
}

/// The first day of `month` in `year`, for tests.
#[cfg(test)]
fn day(year: i32, month: Month, d: u8) -> Date {
    Date::from_calendar_date(year, month, d).expect("a valid date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: Date, h: u8, m: u8) -> OffsetDateTime {
        date.with_time(Time::from_hms(h, m, 0).unwrap())
            .assume_utc()
    }

    #[test]
    fn every_night_at_two() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        let now = at(day(2026, Month::December, 2), 12, 27);
        assert_eq!(
            s.next_after(now),
            Some(at(day(2026, Month::December, 3), 2, 0))
        );
        let just = at(day(2026, Month::December, 3), 2, 0);
        assert_eq!(
            s.next_after(just),
            Some(at(day(2026, Month::December, 4), 2, 0))
        );
    }

    #[test]
    fn steps_lists_ranges_and_names() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        // 2026-12-05 is a Saturday: the next is Monday 09:00.
        let sat = at(day(2026, Month::December, 5), 10, 0);
        assert_eq!(
            s.next_after(sat),
            Some(at(day(2026, Month::December, 7), 9, 0))
        );
        let mon = at(day(2026, Month::December, 7), 9, 7);
        assert_eq!(
            s.next_after(mon),
            Some(at(day(2026, Month::December, 7), 9, 15))
        );
        let s = Schedule::parse("5,35 * * jan,jul 0").unwrap();
        let n = s
            .next_after(at(day(2026, Month::December, 2), 0, 0))
            .unwrap();
        assert_eq!(n, at(day(2027, Month::January, 3), 0, 5));
        assert_eq!(
            Schedule::parse("* * * * *").unwrap().next_after(at(
                day(2026, Month::December, 31),
                23,
                59
            )),
            Some(at(day(2027, Month::January, 1), 0, 0))
        );
    }

    #[test]
    fn both_day_fields_restricted_fire_on_either() {
        // The 1st of the month, or any Friday.
        let s = Schedule::parse("0 0 1 * 5").unwrap();
        let n = s
            .next_after(at(day(2026, Month::December, 2), 0, 0))
            .unwrap();
        assert_eq!(n, at(day(2026, Month::December, 4), 0, 0));
        let s = Schedule::parse("@monthly").unwrap();
        let n = s
            .next_after(at(day(2026, Month::December, 2), 0, 0))
            .unwrap();
        assert_eq!(n, at(day(2027, Month::January, 1), 0, 0));
        assert_eq!(Schedule::parse("0 0 * * 7").unwrap().weekdays, 1 | 1 << 7);
    }

    #[test]
    fn leap_days_and_never() {
        let s = Schedule::parse("0 12 29 2 *").unwrap();
        let n = s
            .next_after(at(day(2026, Month::December, 2), 0, 0))
            .unwrap();
        assert_eq!(n, at(day(2028, Month::February, 29), 12, 0));
        assert_eq!(Schedule::parse("0 0 31 2 *").unwrap().next_after(n), None);
    }

    #[test]
    fn bad_expressions_say_which_field() {
        for (text, says) in [
            ("0 2 * *", "five"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("5-1 * * * *", "minute"),
            ("x * * * *", "minute"),
        ] {
            let e = Schedule::parse(text).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
    }
}
