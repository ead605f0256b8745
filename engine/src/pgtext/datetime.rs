//! Dates, times, timestamps and intervals in PostgreSQL's ISO text forms.
//!
//! Parsing is hand-written digit scanning; rendering assembles the text in a
//! stack buffer and hands it to the output in one piece.

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};

use super::{ascii_str, Out, ParseError};
use crate::value::{Interval, Value};

const USECS_PER_SEC: i64 = 1_000_000;
const USECS_PER_MINUTE: i64 = 60 * USECS_PER_SEC;
const USECS_PER_HOUR: i64 = 60 * USECS_PER_MINUTE;

/// Reads exactly `n` ASCII digits at `*i`.
#[inline]
fn fixed(b: &[u8], i: &mut usize, n: usize) -> Option<u32> {
    let digits = b.get(*i..*i + n)?;
    let mut v = 0u32;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u32::from(d);
    }
    *i += n;
    Some(v)
}

#[inline]
fn eat(b: &[u8], i: &mut usize, c: u8) -> bool {
    if b.get(*i) == Some(&c) {
        *i += 1;
        true
    } else {
        false
    }
}

#[derive(Debug, Clone, Copy)]
struct Ymd {
    year: u32,
    month: u32,
    day: u32,
}

/// `YYYY-MM-DD` at `*i`, with 4 to 7 year digits (PostgreSQL's dates reach year 5874897).
fn scan_date(b: &[u8], i: &mut usize) -> Option<Ymd> {
    let start = *i;
    let mut year = 0u32;
    while *i < b.len() && b[*i].is_ascii_digit() && *i - start < 7 {
        year = year * 10 + u32::from(b[*i] - b'0');
        *i += 1;
    }
    if *i - start < 4 || !eat(b, i, b'-') {
        return None;
    }
    let month = fixed(b, i, 2)?;
    if !eat(b, i, b'-') {
        return None;
    }
    let day = fixed(b, i, 2)?;
    Some(Ymd { year, month, day })
}

fn is_leap(astronomical_year: i64) -> bool {
    astronomical_year % 4 == 0 && (astronomical_year % 100 != 0 || astronomical_year % 400 == 0)
}

/// Checks month and day (proleptic Gregorian; year 1 BC is year 0, a leap year).
fn check_ymd(ymd: Ymd, bc: bool, type_name: &str) -> Result<(), ParseError> {
    if ymd.year == 0 {
        return Err(ParseError::new(type_name, "year 0 does not exist"));
    }
    let astronomical = if bc {
        1 - i64::from(ymd.year)
    } else {
        i64::from(ymd.year)
    };
    let days = match ymd.month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(astronomical) => 29,
        2 => 28,
        _ => return Err(ParseError::new(type_name, "month out of range")),
    };
    if ymd.day == 0 || ymd.day > days {
        return Err(ParseError::new(type_name, "day out of range"));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Hms {
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

/// `HH:MM:SS[.ffffff]` at `*i` (`24:00:00` allowed, as in PostgreSQL).
fn scan_time(b: &[u8], i: &mut usize, type_name: &str) -> Result<Hms, ParseError> {
    let bad = || ParseError::new(type_name, "expected HH:MM:SS[.ffffff]");
    let hour = fixed(b, i, 2).ok_or_else(bad)?;
    if !eat(b, i, b':') {
        return Err(bad());
    }
    let minute = fixed(b, i, 2).ok_or_else(bad)?;
    if !eat(b, i, b':') {
        return Err(bad());
    }
    let second = fixed(b, i, 2).ok_or_else(bad)?;
    let mut micros = 0u32;
    if eat(b, i, b'.') {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        let n = *i - start;
        if n == 0 {
            return Err(bad());
        }
        if n > 6 {
            return Err(ParseError::new(
                type_name,
                "more than 6 fractional second digits",
            ));
        }
        for &c in &b[start..*i] {
            micros = micros * 10 + u32::from(c - b'0');
        }
        micros *= 10u32.pow(6 - n as u32);
    }
    if minute > 59 || second > 59 || hour > 24 || (hour == 24 && (minute | second | micros) != 0) {
        return Err(ParseError::new(type_name, "time field out of range"));
    }
    Ok(Hms {
        hour,
        minute,
        second,
        micros,
    })
}

fn is_infinity(text: &str) -> bool {
    matches!(text, "infinity" | "-infinity")
}

/// A `date`: `YYYY-MM-DD`. `infinity`, BC dates and years chrono cannot
/// hold become [`Value::Other`].
pub(super) fn parse_date(text: &str) -> Result<Value, ParseError> {
    if is_infinity(text) {
        return Ok(Value::Other(text.to_owned()));
    }
    let b = text.as_bytes();
    let mut i = 0;
    let ymd = scan_date(b, &mut i).ok_or_else(|| ParseError::new("date", "expected YYYY-MM-DD"))?;
    let bc = match &b[i..] {
        b"" => false,
        b" BC" => true,
        _ => return Err(ParseError::new("date", "unexpected text after the date")),
    };
    check_ymd(ymd, bc, "date")?;
    if bc {
        return Ok(Value::Other(text.to_owned()));
    }
    Ok(
        match NaiveDate::from_ymd_opt(ymd.year as i32, ymd.month, ymd.day) {
            Some(d) => Value::Date(d),
            None => Value::Other(text.to_owned()),
        },
    )
}

/// A `time`: `HH:MM:SS[.ffffff]`; `24:00:00` becomes [`Value::Other`].
pub(super) fn parse_time(text: &str) -> Result<Value, ParseError> {
    let b = text.as_bytes();
    let mut i = 0;
    let t = scan_time(b, &mut i, "time")?;
    if i != b.len() {
        return Err(ParseError::new("time", "unexpected text after the time"));
    }
    if t.hour == 24 {
        return Ok(Value::Other(text.to_owned()));
    }
    NaiveTime::from_hms_micro_opt(t.hour, t.minute, t.second, t.micros)
        .map(Value::Time)
        .ok_or_else(|| ParseError::new("time", "time field out of range"))
}

/// A `timestamp`: `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`.
pub(super) fn parse_timestamp(text: &str) -> Result<Value, ParseError> {
    parse_ts(text, false)
}

/// A `timestamptz`: `YYYY-MM-DD HH:MM:SS[.ffffff]+HH[:MM[:SS]][ BC]`, normalized to UTC.
pub(super) fn parse_timestamptz(text: &str) -> Result<Value, ParseError> {
    parse_ts(text, true)
}

fn parse_ts(text: &str, tz: bool) -> Result<Value, ParseError> {
    let name = if tz { "timestamptz" } else { "timestamp" };
    if is_infinity(text) {
        return Ok(Value::Other(text.to_owned()));
    }
    let b = text.as_bytes();
    let mut i = 0;
    let ymd = scan_date(b, &mut i).ok_or_else(|| ParseError::new(name, "expected YYYY-MM-DD"))?;
    if !(eat(b, &mut i, b' ') || eat(b, &mut i, b'T')) {
        return Err(ParseError::new(name, "expected a time after the date"));
    }
    let t = scan_time(b, &mut i, name)?;
    let offset_secs = if tz { scan_offset(b, &mut i)? } else { 0 };
    let bc = match &b[i..] {
        b"" => false,
        b" BC" => true,
        _ => return Err(ParseError::new(name, "unexpected text after the timestamp")),
    };
    check_ymd(ymd, bc, name)?;
    let other = || Ok(Value::Other(text.to_owned()));
    if bc {
        return other();
    }
    let Some(mut date) = NaiveDate::from_ymd_opt(ymd.year as i32, ymd.month, ymd.day) else {
        return other();
    };
    let time = if t.hour == 24 {
        // PostgreSQL reads `24:00:00` as midnight of the next day.
        match date.succ_opt() {
            Some(next) => date = next,
            None => return other(),
        }
        NaiveTime::MIN
    } else {
        NaiveTime::from_hms_micro_opt(t.hour, t.minute, t.second, t.micros)
            .ok_or_else(|| ParseError::new(name, "time field out of range"))?
    };
    let local = date.and_time(time);
    if !tz {
        return Ok(Value::Timestamp(local));
    }
    match local.checked_sub_signed(TimeDelta::seconds(i64::from(offset_secs))) {
        Some(utc) => Ok(Value::TimestampTz(utc.and_utc())),
        None => other(),
    }
}

/// A UTC offset at `*i`: `Z`, `+HH`, `+HH:MM`, `+HH:MM:SS` or `+HHMM`;
/// none at all means UTC (the session time zone). Returns seconds east of UTC.
fn scan_offset(b: &[u8], i: &mut usize) -> Result<i32, ParseError> {
    let bad = || ParseError::new("timestamptz", "invalid UTC offset");
    let sign = match b.get(*i) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        Some(b'Z') => {
            *i += 1;
            return Ok(0);
        }
        _ => return Ok(0),
    };
    *i += 1;
    let hours = fixed(b, i, 2).ok_or_else(bad)?;
    let mut minutes = 0;
    let mut seconds = 0;
    if eat(b, i, b':') {
        minutes = fixed(b, i, 2).ok_or_else(bad)?;
        if eat(b, i, b':') {
            seconds = fixed(b, i, 2).ok_or_else(bad)?;
        }
    } else {
        let mut j = *i;
        if let Some(m) = fixed(b, &mut j, 2) {
            minutes = m;
            *i = j;
        }
    }
    if hours > 23 || minutes > 59 || seconds > 59 {
        return Err(bad());
    }
    Ok(sign * (hours * 3600 + minutes * 60 + seconds) as i32)
}

/// A small stack buffer renderers fill with ASCII.
struct Buf {
    b: [u8; 72],
    len: usize,
}

impl Buf {
    fn new() -> Self {
        Self { b: [0; 72], len: 0 }
    }
    #[inline]
    fn byte(&mut self, c: u8) {
        self.b[self.len] = c;
        self.len += 1;
    }
    #[inline]
    fn bytes(&mut self, s: &[u8]) {
        self.b[self.len..self.len + s.len()].copy_from_slice(s);
        self.len += s.len();
    }
    /// `v` zero-padded to at least `width` digits.
    #[inline]
    fn num(&mut self, v: u64, width: usize) {
        let mut tmp = itoa::Buffer::new();
        let s = tmp.format(v).as_bytes();
        for _ in s.len()..width {
            self.byte(b'0');
        }
        self.bytes(s);
    }
    /// `.` and the fraction `v` of `digits` digits, trailing zeros trimmed; nothing for 0.
    fn fraction(&mut self, mut v: u32, mut digits: usize) {
        if v == 0 {
            return;
        }
        while v % 10 == 0 {
            v /= 10;
            digits -= 1;
        }
        self.byte(b'.');
        self.num(u64::from(v), digits);
    }
    fn put<O: Out>(&self, out: &mut O) {
        out.put_str(ascii_str(&self.b[..self.len]));
    }
}

/// Writes the date; returns whether it is BC (the caller appends ` BC` last).
fn put_date(d: NaiveDate, buf: &mut Buf) -> bool {
    let y = d.year();
    let (year, bc) = if y <= 0 {
        ((1 - i64::from(y)) as u64, true)
    } else {
        (y as u64, false)
    };
    buf.num(year, 4);
    buf.byte(b'-');
    buf.num(u64::from(d.month()), 2);
    buf.byte(b'-');
    buf.num(u64::from(d.day()), 2);
    bc
}

fn put_time(t: NaiveTime, buf: &mut Buf) {
    let mut second = t.second();
    let mut nanos = t.nanosecond();
    if nanos >= 1_000_000_000 {
        // chrono's leap second: PostgreSQL reads second 60 as the next minute.
        second += 1;
        nanos -= 1_000_000_000;
    }
    buf.num(u64::from(t.hour()), 2);
    buf.byte(b':');
    buf.num(u64::from(t.minute()), 2);
    buf.byte(b':');
    buf.num(u64::from(second), 2);
    if nanos % 1000 == 0 {
        buf.fraction(nanos / 1000, 6);
    } else {
        // Sub-microsecond precision from another source: PostgreSQL rounds.
        buf.fraction(nanos, 9);
    }
}

/// `YYYY-MM-DD`, ` BC` appended for years before 1.
pub(super) fn render_date<O: Out>(d: NaiveDate, out: &mut O) {
    let mut buf = Buf::new();
    if put_date(d, &mut buf) {
        buf.bytes(b" BC");
    }
    buf.put(out);
}

/// `HH:MM:SS[.ffffff]`.
pub(super) fn render_time<O: Out>(t: NaiveTime, out: &mut O) {
    let mut buf = Buf::new();
    put_time(t, &mut buf);
    buf.put(out);
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff][ BC]`.
pub(super) fn render_timestamp<O: Out>(ts: NaiveDateTime, out: &mut O) {
    let mut buf = Buf::new();
    let bc = put_date(ts.date(), &mut buf);
    buf.byte(b' ');
    put_time(ts.time(), &mut buf);
    if bc {
        buf.bytes(b" BC");
    }
    buf.put(out);
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00[ BC]`: the explicit offset makes the text
/// independent of the reading session's time zone.
pub(super) fn render_timestamptz<O: Out>(ts: chrono::DateTime<chrono::Utc>, out: &mut O) {
    let mut buf = Buf::new();
    let naive = ts.naive_utc();
    let bc = put_date(naive.date(), &mut buf);
    buf.byte(b' ');
    put_time(naive.time(), &mut buf);
    buf.bytes(b"+00");
    if bc {
        buf.bytes(b" BC");
    }
    buf.put(out);
}

fn put_part(buf: &mut Buf, v: i64, unit: u8) {
    if v != 0 {
        if v < 0 {
            buf.byte(b'-');
        }
        buf.num(v.unsigned_abs(), 1);
        buf.byte(unit);
    }
}

/// ISO 8601 with designators, exactly as PostgreSQL's `iso_8601` style
/// writes it (`P1Y2M3DT4H5M6.5S`, `P-1Y-2M3DT-4H-5M-6.5S`, `PT0S`); every
/// PostgreSQL session reads it whatever its `IntervalStyle`.
pub(super) fn render_interval<O: Out>(iv: Interval, out: &mut O) {
    let years = i64::from(iv.months / 12);
    let months = i64::from(iv.months % 12);
    let days = i64::from(iv.days);
    let hours = iv.micros / USECS_PER_HOUR;
    let rest = iv.micros % USECS_PER_HOUR;
    let minutes = rest / USECS_PER_MINUTE;
    let rest = rest % USECS_PER_MINUTE;
    let seconds = rest / USECS_PER_SEC;
    let fsec = rest % USECS_PER_SEC;
    if iv.months == 0 && iv.days == 0 && iv.micros == 0 {
        out.put_str("PT0S");
        return;
    }
    let mut buf = Buf::new();
    buf.byte(b'P');
    put_part(&mut buf, years, b'Y');
    put_part(&mut buf, months, b'M');
    put_part(&mut buf, days, b'D');
    if iv.micros != 0 {
        buf.byte(b'T');
    }
    put_part(&mut buf, hours, b'H');
    put_part(&mut buf, minutes, b'M');
    if seconds != 0 || fsec != 0 {
        if seconds < 0 || fsec < 0 {
            buf.byte(b'-');
        }
        buf.num(seconds.unsigned_abs(), 1);
        buf.fraction(fsec.unsigned_abs() as u32, 6);
        buf.byte(b'S');
    }
    buf.put(out);
}

/// Sums of interval fields before range checking.
#[derive(Default)]
struct Acc {
    months: i128,
    days: i128,
    micros: i128,
}

impl Acc {
    fn finish(self) -> Result<Interval, ParseError> {
        let range = || ParseError::new("interval", "out of range");
        Ok(Interval {
            months: i32::try_from(self.months).map_err(|_| range())?,
            days: i32::try_from(self.days).map_err(|_| range())?,
            micros: i64::try_from(self.micros).map_err(|_| range())?,
        })
    }
}

/// An `interval`: ISO 8601 with designators (`P1Y2M3DT4H5M6.5S`, weeks too);
/// as a fallback PostgreSQL's default `postgres` style
/// (`1 year 2 mons -3 days 04:05:06.5`).
pub(super) fn parse_interval(text: &str) -> Result<Interval, ParseError> {
    if text.as_bytes().first() == Some(&b'P') {
        parse_iso_interval(text.as_bytes())
    } else {
        parse_postgres_interval(text)
    }
}

/// Digits of a fraction (after the point) at `*i` as microseconds, rounded
/// half away from zero at the 7th digit.
fn scan_fraction_micros(b: &[u8], i: &mut usize) -> i128 {
    let mut micros = 0i128;
    let mut n = 0;
    let mut round_up = false;
    while *i < b.len() && b[*i].is_ascii_digit() {
        let d = i128::from(b[*i] - b'0');
        if n < 6 {
            micros = micros * 10 + d;
        } else if n == 6 {
            round_up = d >= 5;
        }
        n += 1;
        *i += 1;
    }
    for _ in n..6 {
        micros *= 10;
    }
    micros + i128::from(round_up)
}

/// An unsigned integer at `*i` (at least one digit), bounded to stay exact in `i128` sums.
fn scan_uint(b: &[u8], i: &mut usize) -> Option<i128> {
    let start = *i;
    let mut v = 0i128;
    while *i < b.len() && b[*i].is_ascii_digit() {
        if *i - start >= 19 {
            return None;
        }
        v = v * 10 + i128::from(b[*i] - b'0');
        *i += 1;
    }
    (*i > start).then_some(v)
}

fn parse_iso_interval(b: &[u8]) -> Result<Interval, ParseError> {
    let bad = |reason: &str| ParseError::new("interval", reason);
    let mut acc = Acc::default();
    let mut in_time = false;
    let mut fields = 0;
    let mut i = 1;
    while i < b.len() {
        if b[i] == b'T' {
            if in_time {
                return Err(bad("two time designators"));
            }
            in_time = true;
            i += 1;
            continue;
        }
        let negative = match b[i] {
            b'-' => {
                i += 1;
                true
            }
            b'+' => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        let int = if b.get(i).is_some_and(u8::is_ascii_digit) {
            scan_uint(b, &mut i).ok_or_else(|| bad("field out of range"))?
        } else {
            0
        };
        let frac = if eat(b, &mut i, b'.') {
            Some(scan_fraction_micros(b, &mut i))
        } else {
            None
        };
        if i == start || (i == start + 1 && frac.is_some()) {
            return Err(bad("expected a number"));
        }
        let unit = *b.get(i).ok_or_else(|| bad("number without a designator"))?;
        i += 1;
        let sign = if negative { -1 } else { 1 };
        match (in_time, unit, frac) {
            (false, b'Y', None) => acc.months += sign * int * 12,
            (false, b'M', None) => acc.months += sign * int,
            (false, b'W', None) => acc.days += sign * int * 7,
            (false, b'D', None) => acc.days += sign * int,
            (true, b'H', None) => acc.micros += sign * int * i128::from(USECS_PER_HOUR),
            (true, b'M', None) => acc.micros += sign * int * i128::from(USECS_PER_MINUTE),
            (true, b'S', f) => {
                acc.micros += sign * (int * i128::from(USECS_PER_SEC) + f.unwrap_or(0));
            }
            (_, _, Some(_)) => return Err(bad("fractional field other than seconds")),
            _ => return Err(bad("unknown or misplaced designator")),
        }
        fields += 1;
    }
    if fields == 0 {
        return Err(bad("no fields"));
    }
    acc.finish()
}

/// `[+-]H+:MM:SS[.f]` as microseconds.
fn parse_clock(tok: &[u8]) -> Option<i128> {
    let mut i = 0;
    let negative = match tok.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let hours = scan_uint(tok, &mut i)?;
    if !eat(tok, &mut i, b':') {
        return None;
    }
    let minutes = fixed(tok, &mut i, 2)?;
    if !eat(tok, &mut i, b':') {
        return None;
    }
    let seconds = fixed(tok, &mut i, 2)?;
    let frac = if eat(tok, &mut i, b'.') {
        scan_fraction_micros(tok, &mut i)
    } else {
        0
    };
    if i != tok.len() || minutes > 59 || seconds > 59 {
        return None;
    }
    let v = hours * i128::from(USECS_PER_HOUR)
        + i128::from(minutes) * i128::from(USECS_PER_MINUTE)
        + i128::from(seconds) * i128::from(USECS_PER_SEC)
        + frac;
    Some(if negative { -v } else { v })
}

fn parse_postgres_interval(text: &str) -> Result<Interval, ParseError> {
    let bad = || ParseError::new("interval", "expected ISO 8601 or postgres style");
    let mut acc = Acc::default();
    let mut tokens = text.split_ascii_whitespace();
    let mut fields = 0;
    while let Some(tok) = tokens.next() {
        fields += 1;
        if tok.contains(':') {
            acc.micros += parse_clock(tok.as_bytes()).ok_or_else(bad)?;
            continue;
        }
        let n = i128::from(tok.parse::<i64>().map_err(|_| bad())?);
        match tokens.next().ok_or_else(bad)? {
            "year" | "years" => acc.months += n * 12,
            "mon" | "mons" => acc.months += n,
            "day" | "days" => acc.days += n,
            _ => return Err(bad()),
        }
    }
    if fields == 0 {
        return Err(bad());
    }
    acc.finish()
}
