//! DDL in `QUERY` events: parsed with `sqlparser` (MySQL dialect) into the
//! schema changes dbsync follows — `CREATE TABLE` (also `LIKE`, `OR REPLACE`),
//! `DROP TABLE`, `RENAME TABLE`, `TRUNCATE`, `ALTER TABLE` (`ADD`/`DROP`/
//! `MODIFY`/`CHANGE`/`RENAME COLUMN`, `RENAME TO`, primary key changes,
//! `CONVERT TO CHARACTER SET`) and database charsets.
//!
//! A few MySQL/MariaDB forms `sqlparser` 0.59 does not know are rewritten on
//! the token stream first (`ALTER ONLINE|IGNORE TABLE`, column `CHARSET x`,
//! `UNIQUE KEY` in a column, `ADD COLUMN IF NOT EXISTS`, `ADD (c1 t1, c2 t2)`,
//! `CONVERT TO CHARACTER SET`). A statement that still does not parse is
//! [`Statement::Unparsed`] with every identifier it mentions, so that the
//! caller stops with a clear error when it may touch a tracked table and
//! ignores it otherwise.

use engine::TableId;
use sqlparser::ast::{
    self, AlterTableOperation, ColumnOption, CreateTableLikeKind, MySQLColumnPosition, ObjectName,
    ObjectNamePart, ObjectType, RenameTableNameKind, SqlOption, TableConstraint,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Word};

use super::schema::ColumnDef;
use super::types::{Charset, ColType};

#[path = "ddl_defaults.rs"]
mod defaults;
use defaults::default_spec;
pub use defaults::DefaultSpec;

/// Where an added or modified column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    Unchanged,
    First,
    After(String),
    Last,
}

/// A column as a DDL statement declares it (its type unresolved until the
/// table's charset is known).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewColumn {
    pub name: String,
    /// The type text, e.g. `varchar(20)` or `enum('a','b')`.
    pub type_text: String,
    /// An explicit `CHARACTER SET`/`COLLATE`.
    pub charset: Option<Charset>,
    pub nullable: bool,
    /// Declared `PRIMARY KEY` inline.
    pub primary: bool,
    /// The declared `DEFAULT` (`None`: none, or `DEFAULT NULL`).
    pub default: Option<DefaultSpec>,
}

impl NewColumn {
    /// Resolves the type against the table's default charset.
    pub fn resolve(&self, table_charset: &Charset) -> Result<ColumnDef, String> {
        let cs = self
            .charset
            .clone()
            .unwrap_or_else(|| table_charset.clone());
        let ty = ColType::parse(&self.type_text, &cs, false)
            .map_err(|e| format!("column {}: {e}", self.name))?;
        let nullable = self.nullable && !self.primary;
        let default = match &self.default {
            Some(DefaultSpec::Literal(l)) => Some(l.clone()),
            Some(DefaultSpec::Expression(_)) | None => None,
        };
        Ok(ColumnDef {
            name: self.name.clone(),
            ty,
            nullable,
            default,
        })
    }
}

/// One `ALTER TABLE` operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    Add {
        col: NewColumn,
        position: Position,
        if_not_exists: bool,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
    /// `MODIFY` (same name) or `CHANGE` (`old` renamed to `col.name`).
    Modify {
        old: String,
        col: NewColumn,
        position: Position,
    },
    RenameColumn {
        old: String,
        new: String,
    },
    RenameTable(TableId),
    AddPrimaryKey(Vec<String>),
    DropPrimaryKey,
    ConvertCharset(Charset),
}

/// What a statement does to table shapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    CreateTable {
        id: TableId,
        columns: Vec<NewColumn>,
        key: Vec<String>,
        charset: Option<Charset>,
        if_not_exists: bool,
        or_replace: bool,
    },
    CreateLike {
        id: TableId,
        like: TableId,
        if_not_exists: bool,
    },
    DropTables(Vec<TableId>),
    Rename(Vec<(TableId, TableId)>),
    Alter {
        id: TableId,
        ops: Vec<AlterOp>,
    },
    Truncate(Vec<TableId>),
    /// `CREATE`/`ALTER DATABASE` with a default charset.
    DatabaseCharset {
        db: String,
        charset: Charset,
    },
    DropDatabase(String),
    /// Row changes logged as a statement (binlog_format is not ROW for
    /// this session): the tables it may touch.
    Dml(Vec<TableId>),
    /// Could not be parsed: every identifier in it (to decide whether it
    /// may concern a tracked table) and the parser's complaint.
    Unparsed {
        idents: Vec<String>,
        reason: String,
    },
    /// No effect on replicated tables (views, users, indexes, ...).
    Other,
}

fn ident_list(tokens: &[Token]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Word(w) => Some(w.value.clone()),
            _ => None,
        })
        .collect()
}

fn is_kw(t: &Token, k: Keyword) -> bool {
    matches!(t, Token::Word(Word { keyword, quote_style: None, .. }) if *keyword == k)
}

fn word_is(t: &Token, s: &str) -> bool {
    matches!(t, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(s))
}

/// Strips whitespace and comments.
fn significant(tokens: Vec<Token>) -> Vec<Token> {
    tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect()
}

struct Rewritten {
    tokens: Vec<Token>,
    if_not_exists_columns: bool,
    convert: Option<Charset>,
}

/// Rewrites forms `sqlparser` does not know into ones it does.
fn rewrite(mut t: Vec<Token>) -> Rewritten {
    let mut out = Rewritten {
        tokens: Vec::with_capacity(t.len()),
        if_not_exists_columns: false,
        convert: None,
    };
    // ALTER ONLINE|IGNORE TABLE
    if t.len() > 2
        && is_kw(&t[0], Keyword::ALTER)
        && (word_is(&t[1], "online") || word_is(&t[1], "ignore"))
    {
        t.remove(1);
    }
    let alter = t.len() > 1 && is_kw(&t[0], Keyword::ALTER) && is_kw(&t[1], Keyword::TABLE);
    let mut i = 0;
    while i < t.len() {
        let tok = &t[i];
        // CONVERT TO CHARACTER SET x [COLLATE y]  /  CONVERT TO CHARSET x
        if alter && word_is(tok, "convert") && t.get(i + 1).is_some_and(|x| is_kw(x, Keyword::TO)) {
            let mut j = i + 2;
            if t.get(j).is_some_and(|x| word_is(x, "character")) {
                j += 2;
            } else {
                j += 1;
            }
            if let Some(Token::Word(w)) = t.get(j) {
                out.convert = Some(Charset::from_name(&w.value));
            }
            j += 1;
            if t.get(j).is_some_and(|x| word_is(x, "collate")) {
                j += 2;
            }
            // Drop a separating comma on one side.
            if matches!(t.get(j), Some(Token::Comma)) {
                j += 1;
            } else if matches!(out.tokens.last(), Some(Token::Comma)) {
                out.tokens.pop();
            }
            i = j;
            continue;
        }
        // ADD COLUMN IF NOT EXISTS
        if alter
            && is_kw(tok, Keyword::IF)
            && t.get(i + 1).is_some_and(|x| is_kw(x, Keyword::NOT))
            && t.get(i + 2).is_some_and(|x| is_kw(x, Keyword::EXISTS))
            && i >= 1
            && (is_kw(&t[i - 1], Keyword::COLUMN) || is_kw(&t[i - 1], Keyword::ADD))
        {
            out.if_not_exists_columns = true;
            i += 3;
            continue;
        }
        // ADD (c1 t1, c2 t2)  →  ADD COLUMN c1 t1, ADD COLUMN c2 t2
        if alter && is_kw(tok, Keyword::ADD) && matches!(t.get(i + 1), Some(Token::LParen)) {
            let mut depth = 0usize;
            let mut j = i + 1;
            out.tokens.push(Token::make_keyword("ADD"));
            out.tokens.push(Token::make_keyword("COLUMN"));
            while j < t.len() {
                match &t[j] {
                    Token::LParen => {
                        depth += 1;
                        if depth > 1 {
                            out.tokens.push(t[j].clone());
                        }
                    }
                    Token::RParen => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                        out.tokens.push(t[j].clone());
                    }
                    Token::Comma if depth == 1 => {
                        out.tokens.push(Token::Comma);
                        out.tokens.push(Token::make_keyword("ADD"));
                        out.tokens.push(Token::make_keyword("COLUMN"));
                    }
                    other => out.tokens.push(other.clone()),
                }
                j += 1;
            }
            i = j + 1;
            continue;
        }
        // column-level `CHARSET x` (not the `CHARSET = x` table option)
        if word_is(tok, "charset")
            && !matches!(t.get(i + 1), Some(Token::Eq))
            && !i
                .checked_sub(1)
                .is_some_and(|p| is_kw(&t[p], Keyword::DEFAULT))
        {
            out.tokens.push(Token::make_keyword("CHARACTER"));
            out.tokens.push(Token::make_keyword("SET"));
            i += 1;
            continue;
        }
        // `ZEROFILL` (implies unsigned; only changes how a client pads)
        if word_is(tok, "zerofill") {
            if !out.tokens.last().is_some_and(|p| word_is(p, "unsigned")) {
                out.tokens.push(Token::make_keyword("UNSIGNED"));
            }
            i += 1;
            continue;
        }
        // `UNIQUE KEY` inside a column definition
        if is_kw(tok, Keyword::UNIQUE)
            && t.get(i + 1).is_some_and(|x| is_kw(x, Keyword::KEY))
            && !matches!(t.get(i + 2), Some(Token::LParen) | Some(Token::Word(_)))
        {
            out.tokens.push(tok.clone());
            i += 2;
            continue;
        }
        out.tokens.push(tok.clone());
        i += 1;
    }
    out
}

/// Parses one statement of a `QUERY` event; `db` is its default database.
pub fn parse(sql: &str, db: &str) -> Statement {
    let dialect = MySqlDialect {};
    let tokens = match Tokenizer::new(&dialect, sql).tokenize() {
        Ok(t) => significant(t),
        Err(e) => {
            return Statement::Unparsed {
                idents: Vec::new(),
                reason: format!("cannot tokenize: {e}"),
            }
        }
    };
    let Some(first) = tokens.first() else {
        return Statement::Other;
    };
    let head = |k: Keyword| is_kw(first, k);
    let idents = ident_list(&tokens);
    // Databases: handled by hand (sqlparser lacks their options).
    if (head(Keyword::CREATE) || head(Keyword::ALTER))
        && tokens
            .get(1)
            .is_some_and(|t| is_kw(t, Keyword::DATABASE) || is_kw(t, Keyword::SCHEMA))
    {
        return database_charset(&tokens);
    }
    if head(Keyword::DROP)
        && tokens
            .get(1)
            .is_some_and(|t| is_kw(t, Keyword::DATABASE) || is_kw(t, Keyword::SCHEMA))
    {
        return match tokens.iter().skip(2).rev().find_map(|t| match t {
            Token::Word(w)
                if !matches!(w.keyword, Keyword::IF | Keyword::EXISTS)
                    || w.quote_style.is_some() =>
            {
                Some(w.value.clone())
            }
            _ => None,
        }) {
            Some(name) => Statement::DropDatabase(name),
            None => Statement::Other,
        };
    }
    let relevant = head(Keyword::CREATE)
        || head(Keyword::ALTER)
        || head(Keyword::DROP)
        || head(Keyword::RENAME)
        || head(Keyword::TRUNCATE);
    let dml = head(Keyword::INSERT)
        || head(Keyword::UPDATE)
        || head(Keyword::DELETE)
        || head(Keyword::REPLACE)
        || head(Keyword::LOAD);
    if !relevant && !dml {
        return Statement::Other;
    }
    // CREATE of something other than a table, DROP/ALTER of non-tables.
    if relevant && !head(Keyword::TRUNCATE) && !head(Keyword::RENAME) {
        let mentions_table = tokens
            .iter()
            .take(6)
            .any(|t| is_kw(t, Keyword::TABLE) || is_kw(t, Keyword::TABLES));
        if !mentions_table {
            return Statement::Other;
        }
        if tokens.iter().take(4).any(|t| is_kw(t, Keyword::TEMPORARY)) {
            // Temporary tables are not logged in row format and never replicated.
            return Statement::Other;
        }
    }
    let rw = rewrite(tokens);
    // `ALTER TABLE t CONVERT TO CHARACTER SET x` alone leaves nothing to parse.
    if let (Some(cs), true) = (&rw.convert, rw.tokens.len() <= 5) {
        let name: Vec<String> = rw.tokens[2..]
            .iter()
            .filter_map(|t| match t {
                Token::Word(w) => Some(w.value.clone()),
                _ => None,
            })
            .collect();
        let id = match name.as_slice() {
            [t] => Some(TableId::new(db, t.clone())),
            [d, t] => Some(TableId::new(d.clone(), t.clone())),
            _ => None,
        };
        if let Some(id) = id {
            return Statement::Alter {
                id,
                ops: vec![AlterOp::ConvertCharset(cs.clone())],
            };
        }
    }
    let parsed = Parser::new(&dialect)
        .with_tokens(rw.tokens)
        .parse_statements();
    let stmts = match parsed {
        Ok(s) if s.len() == 1 => s,
        Ok(_) => {
            return Statement::Unparsed {
                idents,
                reason: "expected exactly one statement".into(),
            }
        }
        Err(e) => {
            if dml {
                return Statement::Dml(Vec::new());
            }
            return Statement::Unparsed {
                idents,
                reason: e.to_string(),
            };
        }
    };
    let Some(stmt) = stmts.into_iter().next() else {
        return Statement::Other;
    };
    match convert(stmt, db, rw.if_not_exists_columns, rw.convert) {
        Ok(s) => s,
        Err(reason) => Statement::Unparsed { idents, reason },
    }
}

fn database_charset(tokens: &[Token]) -> Statement {
    let mut db = None;
    let mut cs = None;
    let mut i = 2;
    while i < tokens.len() {
        let t = &tokens[i];
        if word_is(t, "character") || word_is(t, "charset") || word_is(t, "collate") {
            let collate = word_is(t, "collate");
            let mut j = i + if word_is(t, "character") { 2 } else { 1 };
            if matches!(tokens.get(j), Some(Token::Eq)) {
                j += 1;
            }
            if let Some(Token::Word(w)) = tokens.get(j) {
                let c = if collate {
                    Charset::from_collation(&w.value)
                } else {
                    Charset::from_name(&w.value)
                };
                if cs.is_none() || !collate {
                    cs = Some(c);
                }
            }
            i = j + 1;
            continue;
        }
        if db.is_none() {
            if let Token::Word(w) = t {
                if w.quote_style.is_some()
                    || !matches!(
                        w.keyword,
                        Keyword::IF | Keyword::NOT | Keyword::EXISTS | Keyword::DEFAULT
                    )
                {
                    db = Some(w.value.clone());
                }
            }
        }
        i += 1;
    }
    match (db, cs) {
        (Some(db), Some(charset)) => Statement::DatabaseCharset { db, charset },
        _ => Statement::Other,
    }
}

fn table_id(name: &ObjectName, db: &str) -> Result<TableId, String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(i.value.clone()),
            _ => Err("unexpected function in a table name".to_string()),
        })
        .collect::<Result<_, _>>()?;
    match parts.as_slice() {
        [t] => Ok(TableId::new(db, t.clone())),
        [d, t] => Ok(TableId::new(d.clone(), t.clone())),
        _ => Err(format!("unexpected table name {name}")),
    }
}

fn new_column(
    name: &ast::Ident,
    data_type: &ast::DataType,
    options: &[ColumnOption],
) -> Result<NewColumn, String> {
    let type_text = match data_type {
        ast::DataType::Enum(members, _) => {
            let names: Vec<String> = members
                .iter()
                .map(|m| match m {
                    ast::EnumMember::Name(n) => n.clone(),
                    ast::EnumMember::NamedValue(n, _) => n.clone(),
                })
                .collect();
            ColType::Enum {
                values: names,
                charset: Charset::Utf8mb4,
            }
            .native()
        }
        ast::DataType::Set(members) => ColType::Set {
            values: members.clone(),
            charset: Charset::Utf8mb4,
        }
        .native(),
        other => other.to_string(),
    };
    let mut col = NewColumn {
        name: name.value.clone(),
        type_text,
        charset: None,
        nullable: true,
        primary: false,
        default: None,
    };
    for o in options {
        match o {
            ColumnOption::NotNull => col.nullable = false,
            ColumnOption::Null => col.nullable = true,
            ColumnOption::CharacterSet(n) => col.charset = Some(Charset::from_name(&n.to_string())),
            ColumnOption::Collation(n) if col.charset.is_none() => {
                col.charset = Some(Charset::from_collation(&n.to_string().replace('`', "")))
            }
            ColumnOption::Unique {
                is_primary: true, ..
            } => col.primary = true,
            ColumnOption::Default(e) => col.default = default_spec(e),
            _ => {}
        }
    }
    // A binary collation word on the type (`char(3) binary`) is not a charset.
    Ok(col)
}

fn position(p: &Option<MySQLColumnPosition>, default: Position) -> Position {
    match p {
        None => default,
        Some(MySQLColumnPosition::First) => Position::First,
        Some(MySQLColumnPosition::After(i)) => Position::After(i.value.clone()),
    }
}

fn key_columns(cols: &[ast::IndexColumn]) -> Vec<String> {
    cols.iter()
        .filter_map(|c| match &c.column.expr {
            ast::Expr::Identifier(i) => Some(i.value.clone()),
            // A prefix key `b(10)` parses as a call.
            ast::Expr::Function(f) => Some(f.name.to_string().replace('`', "")),
            ast::Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
            _ => None,
        })
        .collect()
}

fn options_charset(opts: &[SqlOption]) -> Option<Charset> {
    let mut cs = None;
    for o in opts {
        if let SqlOption::KeyValue { key, value } = o {
            let k = key.value.to_ascii_uppercase();
            let v = value
                .to_string()
                .trim_matches(|c| c == '\'' || c == '"' || c == '`')
                .to_string();
            if k.ends_with("CHARSET") || k.ends_with("CHARACTER SET") {
                cs = Some(Charset::from_name(&v));
            } else if k.ends_with("COLLATE") && cs.is_none() {
                cs = Some(Charset::from_collation(&v));
            }
        }
    }
    cs
}

fn table_options(o: &ast::CreateTableOptions) -> &[SqlOption] {
    match o {
        ast::CreateTableOptions::Plain(v)
        | ast::CreateTableOptions::With(v)
        | ast::CreateTableOptions::Options(v)
        | ast::CreateTableOptions::TableProperties(v) => v,
        ast::CreateTableOptions::None => &[],
    }
}

fn convert(
    stmt: ast::Statement,
    db: &str,
    if_not_exists_columns: bool,
    convert: Option<Charset>,
) -> Result<Statement, String> {
    use ast::Statement as S;
    Ok(match stmt {
        S::CreateTable(ct) => {
            let id = table_id(&ct.name, db)?;
            if let Some(like) = &ct.like {
                let like = match like {
                    CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l) => {
                        table_id(&l.name, db)?
                    }
                };
                return Ok(Statement::CreateLike {
                    id,
                    like,
                    if_not_exists: ct.if_not_exists,
                });
            }
            if ct.columns.is_empty() {
                return Err("CREATE TABLE without column definitions".into());
            }
            let mut columns = Vec::with_capacity(ct.columns.len());
            for c in &ct.columns {
                let opts: Vec<ColumnOption> = c.options.iter().map(|o| o.option.clone()).collect();
                columns.push(new_column(&c.name, &c.data_type, &opts)?);
            }
            let mut key: Vec<String> = columns
                .iter()
                .filter(|c| c.primary)
                .map(|c| c.name.clone())
                .collect();
            for con in &ct.constraints {
                if let TableConstraint::PrimaryKey { columns: cols, .. } = con {
                    key = key_columns(cols);
                }
            }
            Statement::CreateTable {
                id,
                columns,
                key,
                charset: options_charset(table_options(&ct.table_options)),
                if_not_exists: ct.if_not_exists,
                or_replace: ct.or_replace,
            }
        }
        S::Drop {
            object_type: ObjectType::Table,
            names,
            ..
        } => Statement::DropTables(
            names
                .iter()
                .map(|n| table_id(n, db))
                .collect::<Result<_, _>>()?,
        ),
        S::Drop { .. } => Statement::Other,
        S::RenameTable(pairs) => Statement::Rename(
            pairs
                .iter()
                .map(|p| Ok((table_id(&p.old_name, db)?, table_id(&p.new_name, db)?)))
                .collect::<Result<_, String>>()?,
        ),
        S::Truncate { table_names, .. } => Statement::Truncate(
            table_names
                .iter()
                .map(|t| table_id(&t.name, db))
                .collect::<Result<_, _>>()?,
        ),
        S::AlterTable {
            name, operations, ..
        } => {
            let id = table_id(&name, db)?;
            let mut ops = Vec::new();
            if let Some(cs) = convert {
                ops.push(AlterOp::ConvertCharset(cs));
            }
            for op in operations {
                if let Some(o) = alter_op(op, db, if_not_exists_columns)? {
                    ops.push(o);
                }
            }
            Statement::Alter { id, ops }
        }
        S::Insert(ins) => Statement::Dml(match &ins.table {
            ast::TableObject::TableName(n) => vec![table_id(n, db)?],
            _ => Vec::new(),
        }),
        S::Update { .. } | S::Delete(_) => Statement::Dml(Vec::new()),
        _ => Statement::Other,
    })
}

fn alter_op(
    op: AlterTableOperation,
    db: &str,
    if_not_exists_columns: bool,
) -> Result<Option<AlterOp>, String> {
    use AlterTableOperation as A;
    Ok(Some(match op {
        A::AddColumn {
            column_def,
            column_position,
            if_not_exists,
            ..
        } => {
            let opts: Vec<ColumnOption> = column_def
                .options
                .iter()
                .map(|o| o.option.clone())
                .collect();
            AlterOp::Add {
                col: new_column(&column_def.name, &column_def.data_type, &opts)?,
                position: position(&column_position, Position::Last),
                if_not_exists: if_not_exists || if_not_exists_columns,
            }
        }
        A::DropColumn {
            column_names,
            if_exists,
            ..
        } => {
            // One name per DROP in MySQL.
            let name = column_names
                .first()
                .map(|i| i.value.clone())
                .ok_or("DROP COLUMN without a name")?;
            AlterOp::Drop { name, if_exists }
        }
        A::ModifyColumn {
            col_name,
            data_type,
            options,
            column_position,
        } => AlterOp::Modify {
            old: col_name.value.clone(),
            col: new_column(&col_name, &data_type, &options)?,
            position: position(&column_position, Position::Unchanged),
        },
        A::ChangeColumn {
            old_name,
            new_name,
            data_type,
            options,
            column_position,
        } => AlterOp::Modify {
            old: old_name.value.clone(),
            col: new_column(&new_name, &data_type, &options)?,
            position: position(&column_position, Position::Unchanged),
        },
        A::RenameColumn {
            old_column_name,
            new_column_name,
        } => AlterOp::RenameColumn {
            old: old_column_name.value,
            new: new_column_name.value,
        },
        A::RenameTable { table_name } => AlterOp::RenameTable(match table_name {
            RenameTableNameKind::As(n) | RenameTableNameKind::To(n) => table_id(&n, db)?,
        }),
        A::AddConstraint {
            constraint: TableConstraint::PrimaryKey { columns, .. },
            ..
        } => AlterOp::AddPrimaryKey(key_columns(&columns)),
        A::DropPrimaryKey { .. } => AlterOp::DropPrimaryKey,
        _ => return Ok(None),
    }))
}

#[cfg(test)]
#[path = "ddl_tests.rs"]
mod tests;
