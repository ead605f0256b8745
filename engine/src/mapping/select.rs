//! Which source tables a mapping takes, and the target table each goes to.
//!
//! A source is `schema.table` where either part may be a glob: `*` (any
//! run of characters), `?` (one character), `[0-9]` / `[!x]` (a class) and
//! `{a,b}` (alternatives). `public.orders_*` takes `orders_0` … `orders_63`;
//! `exclude` removes names or patterns from what a mapping takes. A target
//! part written `*` is the source table's own schema or table name.

use regex::Regex;

use crate::schema::TableId;

/// Whether `s` uses glob syntax.
pub fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// One part of a name: literal or glob.
#[derive(Debug, Clone)]
enum Part {
    Exact(String),
    Glob(Regex),
}

impl Part {
    fn parse(s: &str, what: &str) -> Result<Part, String> {
        if s.is_empty() {
            return Err(format!("the {what} part of a table name is empty"));
        }
        if !is_pattern(s) {
            return Ok(Part::Exact(s.to_string()));
        }
        Ok(Part::Glob(glob_regex(s)?))
    }

    fn matches(&self, s: &str) -> bool {
        match self {
            Part::Exact(e) => e == s,
            Part::Glob(r) => r.is_match(s),
        }
    }
}

/// Translates a glob into an anchored regular expression.
fn glob_regex(glob: &str) -> Result<Regex, String> {
    let mut re = String::from("^(?:");
    let mut chars = glob.chars().peekable();
    let mut in_braces = false;
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                re.push('[');
                if chars.peek() == Some(&'!') {
                    chars.next();
                    re.push('^');
                }
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == ']' {
                        closed = true;
                        break;
                    }
                    if c == '\\' || c == '[' || c == '^' {
                        re.push('\\');
                    }
                    re.push(c);
                }
                if !closed {
                    return Err(format!("pattern {glob:?} has an unclosed '['"));
                }
                re.push(']');
            }
            '{' if !in_braces => {
                in_braces = true;
                re.push_str("(?:");
            }
            ',' if in_braces => re.push('|'),
            '}' if in_braces => {
                in_braces = false;
                re.push(')');
            }
            '{' => return Err(format!("pattern {glob:?} nests '{{'")),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    if in_braces {
        return Err(format!("pattern {glob:?} has an unclosed '{{'"));
    }
    re.push_str(")$");
    Regex::new(&re).map_err(|e| format!("pattern {glob:?} is not valid: {e}"))
}

/// `schema.table` with literal or glob parts.
#[derive(Debug, Clone)]
pub struct TablePattern {
    text: String,
    schema: Part,
    table: Part,
}

impl TablePattern {
    /// Parses `schema.table` (a bare `table` is in `default_schema`).
    pub fn parse(s: &str, default_schema: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a table name is empty".into());
        }
        let (schema, table) = s.split_once('.').unwrap_or((default_schema, s));
        Ok(Self {
            text: s.to_string(),
            schema: Part::parse(schema, "schema")?,
            table: Part::parse(table, "table")?,
        })
    }

    /// Whether `id` is one of the tables the pattern names.
    pub fn matches(&self, id: &TableId) -> bool {
        self.schema.matches(&id.schema) && self.table.matches(&id.name)
    }

    /// The one table, when neither part is a glob.
    pub fn exact(&self) -> Option<TableId> {
        match (&self.schema, &self.table) {
            (Part::Exact(s), Part::Exact(t)) => Some(TableId::new(s, t)),
            _ => None,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn schema_is_glob(&self) -> bool {
        matches!(self.schema, Part::Glob(_))
    }

    fn table_is_glob(&self) -> bool {
        matches!(self.table, Part::Glob(_))
    }
}

/// A target name; `None` parts are `*` (the source's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetName {
    schema: Option<String>,
    table: Option<String>,
}

impl TargetName {
    /// Parses the target; absent means the source's own name.
    pub fn parse(target: Option<&str>, source: &TablePattern) -> Result<Self, String> {
        let Some(t) = target.map(str::trim) else {
            return Ok(match source.exact() {
                Some(id) => Self {
                    schema: Some(id.schema),
                    table: Some(id.name),
                },
                None => Self {
                    schema: None,
                    table: None,
                },
            });
        };
        // A bare target table is in `public` (as a bare source table is).
        let (schema, table) = t.split_once('.').unwrap_or(("public", t));
        let part = |p: &str, what: &str| -> Result<Option<String>, String> {
            if p == "*" {
                Ok(None)
            } else if p.is_empty() || is_pattern(p) {
                Err(format!(
                    "target {t:?}: the {what} must be a name or `*` (the source's own), not a pattern"
                ))
            } else {
                Ok(Some(p.to_string()))
            }
        };
        Ok(Self {
            schema: part(schema, "schema")?,
            table: part(table, "table")?,
        })
    }

    /// The target of source table `id`.
    pub fn resolve(&self, id: &TableId) -> TableId {
        TableId::new(
            self.schema.clone().unwrap_or_else(|| id.schema.clone()),
            self.table.clone().unwrap_or_else(|| id.name.clone()),
        )
    }

    /// Whether two different source tables can land in one target table
    /// (a glob part of the source whose target part is a fixed name).
    pub fn many_to_one(&self, source: &TablePattern) -> bool {
        (source.schema_is_glob() && self.schema.is_some())
            || (source.table_is_glob() && self.table.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str, t: &str) -> TableId {
        TableId::new(s, t)
    }

    #[test]
    fn globs() {
        let p = TablePattern::parse("public.orders_*", "public").unwrap();
        assert!(p.matches(&id("public", "orders_0")));
        assert!(p.matches(&id("public", "orders_63")));
        assert!(!p.matches(&id("public", "orders")));
        assert!(!p.matches(&id("sales", "orders_1")));
        assert!(p.exact().is_none());
        let p = TablePattern::parse("shard_[0-9].{a,b}?", "public").unwrap();
        assert!(p.matches(&id("shard_3", "ax")));
        assert!(p.matches(&id("shard_3", "b1")));
        assert!(!p.matches(&id("shard_x", "ax")));
        assert!(!p.matches(&id("shard_3", "cx")));
        let p = TablePattern::parse("a.[!x]", "public").unwrap();
        assert!(p.matches(&id("a", "y")) && !p.matches(&id("a", "x")));
        // Regex metacharacters in names are literal.
        let p = TablePattern::parse("public.a+b*", "public").unwrap();
        assert!(p.matches(&id("public", "a+bc")) && !p.matches(&id("public", "aab")));
        let p = TablePattern::parse("orders", "public").unwrap();
        assert_eq!(p.exact(), Some(id("public", "orders")));
        for bad in ["a.[x", "a.{b", "a.{b{c}}", "", "a."] {
            assert!(TablePattern::parse(bad, "public").is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        let src = TablePattern::parse("public.orders_*", "public").unwrap();
        let t = TargetName::parse(Some("sales.orders"), &src).unwrap();
        assert_eq!(t.resolve(&id("public", "orders_7")), id("sales", "orders"));
        assert!(t.many_to_one(&src));
        let t = TargetName::parse(Some("archive.*"), &src).unwrap();
        assert_eq!(
            t.resolve(&id("public", "orders_7")),
            id("archive", "orders_7")
        );
        assert!(!t.many_to_one(&src));
        let t = TargetName::parse(None, &src).unwrap();
        assert_eq!(
            t.resolve(&id("public", "orders_7")),
            id("public", "orders_7")
        );
        let exact = TablePattern::parse("public.c", "public").unwrap();
        let t = TargetName::parse(Some("clients"), &exact).unwrap();
        assert_eq!(t.resolve(&id("public", "c")), id("public", "clients"));
        let t = TargetName::parse(
            Some("clients"),
            &TablePattern::parse("crm.c", "public").unwrap(),
        )
        .unwrap();
        assert_eq!(t.resolve(&id("crm", "c")), id("public", "clients"));
        assert!(TargetName::parse(Some("x.a*"), &src).is_err());
    }
}
