//! `LIKE` patterns: `%` any run of characters, `_` one character, an escape
//! character (default `\`) making the next one literal. Common shapes
//! (`abc`, `abc%`, `%abc`, `%abc%`) compile to plain string tests.

/// A compiled `LIKE` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LikePattern {
    kind: Kind,
    /// `ILIKE`: the pattern is lowercased; values are lowercased before matching.
    ci: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    General(Vec<Tok>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Char(char),
    One,
    Any,
}

impl LikePattern {
    /// Compiles `pat`; an escape character at the end is an error.
    pub fn compile(pat: &str, escape: Option<char>, ci: bool) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut chars = pat.chars();
        while let Some(c) = chars.next() {
            if Some(c) == escape {
                match chars.next() {
                    Some(n) => toks.push(Tok::Char(n)),
                    None => return Err("LIKE pattern ends with its escape character".into()),
                }
            } else if c == '%' {
                if toks.last() != Some(&Tok::Any) {
                    toks.push(Tok::Any);
                }
            } else if c == '_' {
                toks.push(Tok::One);
            } else {
                toks.push(Tok::Char(c));
            }
        }
        let lit = |t: &[Tok]| -> Option<String> {
            t.iter()
                .map(|t| match t {
                    Tok::Char(c) => Some(if ci {
                        c.to_lowercase().collect::<String>()
                    } else {
                        c.to_string()
                    }),
                    _ => None,
                })
                .collect()
        };
        let n = toks.len();
        let kind = if let Some(s) = lit(&toks) {
            Kind::Exact(s)
        } else if n >= 1
            && toks[n - 1] == Tok::Any
            && toks[0] != Tok::Any
            && lit(&toks[..n - 1]).is_some()
        {
            Kind::Prefix(lit(&toks[..n - 1]).unwrap_or_default())
        } else if n >= 1
            && toks[0] == Tok::Any
            && toks[n - 1] != Tok::Any
            && lit(&toks[1..]).is_some()
        {
            Kind::Suffix(lit(&toks[1..]).unwrap_or_default())
        } else if n >= 2
            && toks[0] == Tok::Any
            && toks[n - 1] == Tok::Any
            && lit(&toks[1..n - 1]).is_some()
        {
            Kind::Contains(lit(&toks[1..n - 1]).unwrap_or_default())
        } else {
            if ci {
                for t in &mut toks {
                    if let Tok::Char(c) = t {
                        let mut l = c.to_lowercase();
                        if let (Some(x), None) = (l.next(), l.next()) {
                            *c = x;
                        }
                    }
                }
            }
            Kind::General(toks)
        };
        Ok(Self { kind, ci })
    }

    /// Whether `s` matches.
    pub fn matches(&self, s: &str) -> bool {
        if self.ci {
            let lower = s.to_lowercase();
            return self.matches_exact_case(&lower);
        }
        self.matches_exact_case(s)
    }

    fn matches_exact_case(&self, s: &str) -> bool {
        match &self.kind {
            Kind::Exact(p) => s == p,
            Kind::Prefix(p) => s.starts_with(p.as_str()),
            Kind::Suffix(p) => s.ends_with(p.as_str()),
            Kind::Contains(p) => memchr::memmem::find(s.as_bytes(), p.as_bytes()).is_some(),
            Kind::General(toks) => general(toks, s),
        }
    }
}

/// Wildcard matching with one backtracking point per `%` (linear in practice).
fn general(toks: &[Tok], s: &str) -> bool {
    let (mut ti, mut si) = (0usize, 0usize);
    // (token after the last `%`, text position it was tried at)
    let mut star: Option<(usize, usize)> = None;
    let next_char = |si: usize| s[si..].chars().next();
    loop {
        if ti < toks.len() {
            match &toks[ti] {
                Tok::Any => {
                    star = Some((ti + 1, si));
                    ti += 1;
                    continue;
                }
                Tok::One => {
                    if let Some(c) = next_char(si) {
                        ti += 1;
                        si += c.len_utf8();
                        continue;
                    }
                }
                Tok::Char(p) => {
                    if let Some(c) = next_char(si) {
                        if c == *p {
                            ti += 1;
                            si += c.len_utf8();
                            continue;
                        }
                    }
                }
            }
        } else if si == s.len() {
            return true;
        }
        // Mismatch: let the last `%` take one more character.
        match star {
            Some((t, at)) => match next_char(at) {
                Some(c) => {
                    let at = at + c.len_utf8();
                    star = Some((t, at));
                    ti = t;
                    si = at;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        LikePattern::compile(p, Some('\\'), false)
            .unwrap()
            .matches(s)
    }

    #[test]
    fn shapes() {
        assert!(m("abc", "abc") && !m("abc", "abcd"));
        assert!(m("ab%", "abzz") && !m("ab%", "zab"));
        assert!(m("%bc", "abc") && !m("%bc", "bca"));
        assert!(m("%b%", "abc") && !m("%x%", "abc"));
        assert!(m("%", "") && m("%", "anything"));
        assert!(m("a_c", "abc") && m("a_c", "aéc") && !m("a_c", "ac"));
        assert!(m("a%c%e", "abcde") && m("a%c%e", "ace") && !m("a%c%e", "acd"));
        assert!(m("%a%b%", "xxaxxbxx") && !m("%a%b%", "bxa"));
        assert!(m("_%_", "ab") && !m("_%_", "a"));
        assert!(m("100\\%", "100%") && !m("100\\%", "1000"));
        assert!(m("a\\_b", "a_b") && !m("a\\_b", "axb"));
        assert!(LikePattern::compile("x\\", Some('\\'), false).is_err());
        assert!(LikePattern::compile("x!%", Some('!'), false)
            .unwrap()
            .matches("x%"));
    }

    #[test]
    fn case_insensitive() {
        let p = LikePattern::compile("ab%", Some('\\'), true).unwrap();
        assert!(p.matches("ABC") && p.matches("abc") && !p.matches("xabc"));
        let p = LikePattern::compile("a_C%", Some('\\'), true).unwrap();
        assert!(p.matches("AbcD"));
    }
}
