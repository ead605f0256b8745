//! Exact decimal arithmetic for row filters and transform rules: a 128-bit
//! mantissa and a decimal scale, i.e. up to 38 significant digits. Results
//! that do not fit are reported (`None`), never rounded silently.

use std::cmp::Ordering;

/// `m / 10^s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    /// Mantissa.
    pub m: i128,
    /// Decimal places.
    pub s: u32,
}

/// The largest scale kept (digits beyond it cannot be represented anyway).
pub const MAX_SCALE: u32 = 38;

const fn pow10_table() -> [i128; 39] {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
}

const POW10: [i128; 39] = pow10_table();

fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

impl Dec {
    /// An integer.
    pub fn int(v: i64) -> Dec {
        Dec { m: v as i128, s: 0 }
    }

    /// Parses `[+-]digits[.digits][e[+-]digits]`; `None` for anything else
    /// (including `NaN`, `Infinity`) or more than 38 significant digits.
    pub fn parse(text: &str) -> Option<Dec> {
        let b = text.trim().as_bytes();
        let (neg, mut i) = match b.first()? {
            b'-' => (true, 1),
            b'+' => (false, 1),
            _ => (false, 0),
        };
        let mut m: i128 = 0;
        let mut s: i32 = 0;
        let mut digits = 0;
        let mut seen_dot = false;
        let mut any = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    any = true;
                    if m != 0 || c != b'0' {
                        digits += 1;
                    }
                    m = m.checked_mul(10)?.checked_add((c - b'0') as i128)?;
                    if seen_dot {
                        s += 1;
                    }
                }
                b'.' if !seen_dot => seen_dot = true,
                b'e' | b'E' => break,
                _ => return None,
            }
            i += 1;
        }
        if !any || digits > 38 {
            return None;
        }
        if i < b.len() {
            let exp: i32 = std::str::from_utf8(&b[i + 1..]).ok()?.parse().ok()?;
            s = s.checked_sub(exp)?;
        }
        if s < 0 {
            m = m.checked_mul(pow10(u32::try_from(s.checked_neg()?).ok()?)?)?;
            s = 0;
        }
        let s = u32::try_from(s).ok()?;
        if s > MAX_SCALE {
            return None;
        }
        Some(Dec {
            m: if neg { -m } else { m },
            s,
        })
    }

    /// The nearest decimal to a finite float (its shortest round-trip text).
    pub fn from_f64(f: f64) -> Option<Dec> {
        if !f.is_finite() {
            return None;
        }
        Dec::parse(ryu::Buffer::new().format_finite(f))
    }

    /// Canonical text: `-12.340`, `0.05`, `7`.
    pub fn to_text(self) -> String {
        let mut out = String::with_capacity(24);
        self.write(&mut out);
        out
    }

    /// Appends the canonical text.
    pub fn write(self, out: &mut String) {
        if self.m < 0 {
            out.push('-');
        }
        let mut buf = itoa::Buffer::new();
        let digits = buf.format(self.m.unsigned_abs());
        let s = self.s as usize;
        if s == 0 {
            out.push_str(digits);
        } else if digits.len() > s {
            let (a, b) = digits.split_at(digits.len() - s);
            out.push_str(a);
            out.push('.');
            out.push_str(b);
        } else {
            out.push_str("0.");
            for _ in digits.len()..s {
                out.push('0');
            }
            out.push_str(digits);
        }
    }

    /// The same value with scale `s` (≥ the current one).
    fn rescale(self, s: u32) -> Option<Dec> {
        if s < self.s {
            return None;
        }
        Some(Dec {
            m: self.m.checked_mul(pow10(s - self.s)?)?,
            s,
        })
    }

    /// The exact sum (`None` beyond 38 digits).
    pub fn checked_add(self, o: Dec) -> Option<Dec> {
        let s = self.s.max(o.s);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Some(Dec {
            m: a.m.checked_add(b.m)?,
            s,
        })
    }

    /// The exact difference (`None` beyond 38 digits).
    pub fn checked_sub(self, o: Dec) -> Option<Dec> {
        self.checked_add(Dec { m: -o.m, s: o.s })
    }

    /// The exact product (scale = sum of scales, trailing zeros trimmed when
    /// the scale would exceed [`MAX_SCALE`]).
    pub fn checked_mul(self, o: Dec) -> Option<Dec> {
        let mut d = Dec {
            m: self.m.checked_mul(o.m)?,
            s: self.s + o.s,
        };
        while d.s > MAX_SCALE && d.m % 10 == 0 {
            d.m /= 10;
            d.s -= 1;
        }
        (d.s <= MAX_SCALE).then_some(d)
    }

    /// The quotient rounded half away from zero to `scale` places; `None`
    /// when dividing by zero or out of range.
    pub fn checked_div(self, o: Dec, scale: u32) -> Option<Dec> {
        if o.m == 0 || scale > MAX_SCALE {
            return None;
        }
        // self/o = (a.m / 10^a.s) / (b.m / 10^b.s); want q = value * 10^scale.
        // q = a.m * 10^(scale + b.s - a.s) / b.m.
        let exp = scale as i64 + o.s as i64 - self.s as i64;
        let (num, den) = if exp >= 0 {
            (self.m.checked_mul(pow10(exp as u32)?)?, o.m)
        } else {
            (self.m, o.m.checked_mul(pow10((-exp) as u32)?)?)
        };
        let q = num / den;
        let r = num % den;
        let round_up = r.unsigned_abs().checked_mul(2)? >= den.unsigned_abs();
        let q = if round_up {
            if (num < 0) != (den < 0) {
                q - 1
            } else {
                q + 1
            }
        } else {
            q
        };
        Some(Dec { m: q, s: scale })
    }

    /// The remainder with the sign of `self` (SQL `%`).
    pub fn checked_rem(self, o: Dec) -> Option<Dec> {
        if o.m == 0 {
            return None;
        }
        let s = self.s.max(o.s);
        let (a, b) = (self.rescale(s)?, o.rescale(s)?);
        Some(Dec { m: a.m % b.m, s })
    }

    /// Rounded half away from zero to `scale` places (never more places than it has).
    pub fn round(self, scale: u32) -> Dec {
        if scale >= self.s {
            return self;
        }
        let p = POW10[(self.s - scale) as usize];
        let q = self.m / p;
        let r = (self.m % p).unsigned_abs();
        let q = if r * 2 >= p.unsigned_abs() {
            if self.m < 0 {
                q - 1
            } else {
                q + 1
            }
        } else {
            q
        };
        Dec { m: q, s: scale }
    }

    /// Whether the value has no fractional part.
    pub fn is_integer(self) -> bool {
        self.s == 0 || self.m % POW10[self.s as usize] == 0
    }

    /// The integer value, when integral and within `i64`.
    pub fn to_i64(self) -> Option<i64> {
        if !self.is_integer() {
            return None;
        }
        i64::try_from(self.m / POW10[self.s as usize]).ok()
    }

    /// The nearest float.
    pub fn to_f64(self) -> f64 {
        let mut s = String::with_capacity(24);
        self.write(&mut s);
        s.parse().unwrap_or(f64::NAN)
    }

    /// Digits before the decimal point (0 for `0.x`).
    pub fn int_digits(self) -> u32 {
        let i = (self.m / POW10[self.s as usize]).unsigned_abs();
        if i == 0 {
            0
        } else {
            i.ilog10() + 1
        }
    }

    /// Trailing fractional zeros removed.
    pub fn normalize(mut self) -> Dec {
        while self.s > 0 && self.m % 10 == 0 {
            self.m /= 10;
            self.s -= 1;
        }
        self
    }
}

impl Ord for Dec {
    fn cmp(&self, o: &Dec) -> Ordering {
        let (pa, pb) = (POW10[self.s as usize], POW10[o.s as usize]);
        let (ia, ib) = (self.m / pa, o.m / pb);
        match ia.cmp(&ib) {
            Ordering::Equal => {}
            other => return other,
        }
        // Same integer part (and so the same sign unless zero): compare the
        // fractions at a common scale, which cannot overflow (< 10^38).
        let s = self.s.max(o.s);
        let fa = (self.m % pa) * POW10[(s - self.s) as usize];
        let fb = (o.m % pb) * POW10[(s - o.s) as usize];
        fa.cmp(&fb)
    }
}

impl PartialOrd for Dec {
    fn partial_cmp(&self, o: &Dec) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Compares two canonical decimal texts of any length (`-12.5`, `003`),
/// `None` when either is not a plain decimal.
pub fn cmp_decimal_text(a: &str, b: &str) -> Option<Ordering> {
    fn split(t: &str) -> Option<(bool, &str, &str)> {
        let t = t.trim();
        let (neg, t) = match t.as_bytes().first()? {
            b'-' => (true, &t[1..]),
            b'+' => (false, &t[1..]),
            _ => (false, t),
        };
        let (i, f) = t.split_once('.').unwrap_or((t, ""));
        if i.is_empty() && f.is_empty() || !i.bytes().chain(f.bytes()).all(|c| c.is_ascii_digit()) {
            return None;
        }
        let i = i.trim_start_matches('0');
        let f = f.trim_end_matches('0');
        let zero = i.is_empty() && f.is_empty();
        Some((neg && !zero, i, f))
    }
    let (na, ia, fa) = split(a)?;
    let (nb, ib, fb) = split(b)?;
    let mag = ia
        .len()
        .cmp(&ib.len())
        .then_with(|| ia.cmp(ib))
        .then_with(|| fa.cmp(fb));
    Some(match (na, nb) {
        (false, false) => mag,
        (true, true) => mag.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn parse_and_print() {
        for (i, o) in [
            ("12.340", "12.340"),
            ("-0.05", "-0.05"),
            ("+7", "7"),
            ("1e3", "1000"),
            ("1.5E-2", "0.015"),
            (".5", "0.5"),
            ("0", "0"),
        ] {
            assert_eq!(d(i).to_text(), o, "{i}");
        }
        for bad in ["", "-", "1.2.3", "abc", "NaN", "1e", "1x"] {
            assert!(Dec::parse(bad).is_none(), "{bad}");
        }
        assert!(Dec::parse(&"9".repeat(39)).is_none());
        assert!(Dec::parse(&"9".repeat(38)).is_some());
        assert_eq!(Dec::from_f64(1.1).unwrap().to_text(), "1.1");
    }

    #[test]
    fn arithmetic_is_exact() {
        assert_eq!(
            d("19.99").checked_mul(d("1.1")).unwrap().to_text(),
            "21.989"
        );
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap().to_text(), "0.3");
        assert_eq!(d("1").checked_sub(d("0.001")).unwrap().to_text(), "0.999");
        assert_eq!(d("10").checked_div(d("3"), 4).unwrap().to_text(), "3.3333");
        assert_eq!(d("2").checked_div(d("3"), 2).unwrap().to_text(), "0.67");
        assert_eq!(d("-2").checked_div(d("3"), 2).unwrap().to_text(), "-0.67");
        assert!(d("1").checked_div(d("0"), 2).is_none());
        assert_eq!(d("7.5").checked_rem(d("2")).unwrap().to_text(), "1.5");
        assert!(d(&"9".repeat(38)).checked_mul(d("10")).is_none());
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(d("2.345").round(2).to_text(), "2.35");
        assert_eq!(d("-2.345").round(2).to_text(), "-2.35");
        assert_eq!(d("2.344").round(2).to_text(), "2.34");
        assert_eq!(d("2.5").round(0).to_text(), "3");
        assert_eq!(d("2.5").round(3).to_text(), "2.5");
    }

    #[test]
    fn ordering() {
        assert!(d("1.10") == d("1.1").rescale(2).unwrap());
        assert_eq!(d("1.10").cmp(&d("1.1")), Ordering::Equal);
        assert!(d("-0.5") < d("0.25"));
        assert!(d("-1.5") < d("-1.25"));
        assert!(d("100") > d("99.999"));
        assert_eq!(
            cmp_decimal_text(&format!("{}1", "9".repeat(40)), "1e3"),
            None
        );
        assert_eq!(
            cmp_decimal_text(&"9".repeat(40), &"9".repeat(39)),
            Some(Ordering::Greater)
        );
        assert_eq!(cmp_decimal_text("-0.0", "0"), Some(Ordering::Equal));
        assert_eq!(cmp_decimal_text("-2", "-10"), Some(Ordering::Greater));
        assert_eq!(d("123.45").int_digits(), 3);
        assert_eq!(d("0.45").int_digits(), 0);
        assert_eq!(d("3.000").to_i64(), Some(3));
        assert_eq!(d("3.5").to_i64(), None);
    }
}
