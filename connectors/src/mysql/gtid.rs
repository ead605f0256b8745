//! GTID state: what the stream has executed, in the server's own text form,
//! so that a resume offset can carry it (`BinlogPosition::gtid_set`) and a
//! restart can resume by GTID.
//!
//! - **MariaDB**: one GTID per replication domain, `domain-server-seq`,
//!   comma-separated (`0-1-42,1-7-3`); the form `@slave_connect_state` takes.
//! - **MySQL**: a GTID set, `source_uuid:interval[:interval...]`,
//!   comma-separated (`3e11fa47-...:1-5:7`); intervals are inclusive.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::binlog::MariaGtid;

/// The executed GTIDs as far as the stream has read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GtidState {
    /// GTIDs are off (or not yet known).
    #[default]
    None,
    Maria(BTreeMap<u32, MariaGtid>),
    Mysql(BTreeMap<[u8; 16], Vec<(u64, u64)>>),
}

fn bad(s: &str) -> String {
    format!("cannot parse the GTID set {s:?}")
}

impl GtidState {
    /// Parses MariaDB's `domain-server-seq,...` (empty: no GTIDs yet).
    pub fn parse_maria(s: &str) -> Result<Self, String> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split('-');
            let (Some(d), Some(sv), Some(q), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(bad(s));
            };
            let g = MariaGtid {
                domain: d.parse().map_err(|_| bad(s))?,
                server: sv.parse().map_err(|_| bad(s))?,
                seq: q.parse().map_err(|_| bad(s))?,
            };
            m.insert(g.domain, g);
        }
        Ok(GtidState::Maria(m))
    }

    /// Parses a MySQL GTID set.
    pub fn parse_mysql(s: &str) -> Result<Self, String> {
        let mut m = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut it = part.split(':');
            let uuid = parse_uuid(it.next().unwrap_or("")).ok_or_else(|| bad(s))?;
            let mut ivs: Vec<(u64, u64)> = Vec::new();
            for iv in it {
                let (a, b) = match iv.split_once('-') {
                    Some((a, b)) => (a, b),
                    None => (iv, iv),
                };
                let a: u64 = a.trim().parse().map_err(|_| bad(s))?;
                let b: u64 = b.trim().parse().map_err(|_| bad(s))?;
                if a == 0 || b < a {
                    return Err(bad(s));
                }
                ivs.push((a, b));
            }
            let e = m.entry(uuid).or_insert_with(Vec::new);
            for iv in ivs {
                add_interval(e, iv.0, iv.1);
            }
        }
        Ok(GtidState::Mysql(m))
    }

    /// Records an executed MariaDB GTID.
    pub fn add_maria(&mut self, g: MariaGtid) {
        if !matches!(self, GtidState::Maria(_)) {
            *self = GtidState::Maria(BTreeMap::new());
        }
        if let GtidState::Maria(m) = self {
            m.insert(g.domain, g);
        }
    }

    /// Records an executed MySQL GTID.
    pub fn add_mysql(&mut self, sid: [u8; 16], gno: u64) {
        if !matches!(self, GtidState::Mysql(_)) {
            *self = GtidState::Mysql(BTreeMap::new());
        }
        if let GtidState::Mysql(m) = self {
            add_interval(m.entry(sid).or_default(), gno, gno);
        }
    }

    /// The server's text form; `None` when GTIDs are off.
    pub fn text(&self) -> Option<String> {
        match self {
            GtidState::None => None,
            GtidState::Maria(m) => Some(
                m.values()
                    .map(|g| g.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            GtidState::Mysql(m) => {
                let mut s = String::new();
                for (uuid, ivs) in m {
                    if !s.is_empty() {
                        s.push(',');
                    }
                    s.push_str(&format_uuid(uuid));
                    for (a, b) in ivs {
                        if a == b {
                            let _ = write!(s, ":{a}");
                        } else {
                            let _ = write!(s, ":{a}-{b}");
                        }
                    }
                }
                Some(s)
            }
        }
    }
}

fn add_interval(ivs: &mut Vec<(u64, u64)>, a: u64, b: u64) {
    ivs.push((a, b));
    ivs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(ivs.len());
    for &(a, b) in ivs.iter() {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    *ivs = merged;
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A 16-byte UUID in its usual lowercase hyphenated form.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let h = hex::encode(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_state_keeps_the_last_gtid_per_domain() {
        let mut s = GtidState::parse_maria("0-1-5, 2-9-1").unwrap();
        s.add_maria(MariaGtid {
            domain: 0,
            server: 3,
            seq: 6,
        });
        s.add_maria(MariaGtid {
            domain: 1,
            server: 1,
            seq: 1,
        });
        assert_eq!(s.text().unwrap(), "0-3-6,1-1-1,2-9-1");
        assert_eq!(GtidState::parse_maria("").unwrap().text().unwrap(), "");
        assert!(GtidState::parse_maria("0-1").is_err());
        assert!(GtidState::parse_maria("a-b-c").is_err());
    }

    #[test]
    fn mysql_sets_merge_intervals() {
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        let mut s = GtidState::parse_mysql(&format!("{}:1-5:7", u.to_uppercase())).unwrap();
        assert_eq!(s.text().unwrap(), format!("{u}:1-5:7"));
        let sid = parse_uuid(u).unwrap();
        s.add_mysql(sid, 6);
        assert_eq!(s.text().unwrap(), format!("{u}:1-7"));
        s.add_mysql(sid, 9);
        s.add_mysql([0; 16], 1);
        assert_eq!(
            s.text().unwrap(),
            format!("00000000-0000-0000-0000-000000000000:1,{u}:1-7:9")
        );
        assert!(GtidState::parse_mysql("nope:1").is_err());
        assert!(GtidState::parse_mysql(&format!("{u}:5-1")).is_err());
    }
}
