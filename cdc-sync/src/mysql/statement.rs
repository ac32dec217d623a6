//! What a statement in the binlog (a Query event) means for the reader:
//! the edges of a transaction, statements inside one, or DDL — and which
//! tables a DDL statement names.

/// The kind of a logged statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statement {
    /// `BEGIN`, `START TRANSACTION`: a transaction opens.
    Begin,
    /// `COMMIT`: it ends (non-transactional engines; InnoDB ends with XID).
    Commit,
    /// `ROLLBACK` (whole): logged only after changes to tables that could
    /// not be rolled back (non-transactional engines), which happened.
    Rollback,
    /// `TRUNCATE [TABLE] t`.
    Truncate,
    /// `CREATE`, `ALTER`, `DROP`, `RENAME`: shapes may change.
    Ddl,
    /// `XA …`: two-phase transactions, not read.
    Xa,
    /// Anything else (`SAVEPOINT`, `RELEASE SAVEPOINT`, `ROLLBACK TO`,
    /// `SET`, `GRANT`, `ANALYZE` …): no rows, no shape, the transaction
    /// around it goes on.
    Other,
}

/// The statement without leading blanks and comments.
fn body(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            match rest.find("*/") {
                Some(end) => s = rest[end + 2..].trim_start(),
                None => return "",
            }
        } else if s.starts_with('#') || s.starts_with("--") {
            match s.find('\n') {
                Some(end) => s = s[end + 1..].trim_start(),
                None => return "",
            }
        } else {
            return s;
        }
    }
}

/// The first `n` words of `sql`, upper-cased.
fn words(sql: &str, n: usize) -> Vec<String> {
    body(sql)
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(' || c == '`')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// What `sql` is.
pub fn classify(sql: &str) -> Statement {
    let w = words(sql, 2);
    match (w.first().map(String::as_str), w.get(1).map(String::as_str)) {
        (Some("BEGIN"), _) | (Some("START"), Some("TRANSACTION")) => Statement::Begin,
        (Some("COMMIT"), _) => Statement::Commit,
        (Some("ROLLBACK"), Some("TO")) => Statement::Other,
        (Some("ROLLBACK"), _) => Statement::Rollback,
        (Some("TRUNCATE"), _) => Statement::Truncate,
        (Some("CREATE" | "ALTER" | "DROP" | "RENAME"), _) => Statement::Ddl,
        (Some("XA"), _) => Statement::Xa,
        _ => Statement::Other,
    }
}

/// Whether `sql` (run in database `schema`) names table `db`.`table`: the
/// name as a whole identifier (quoted or not), qualified by `db` or
/// unqualified in `db`.
pub fn names(sql: &str, schema: &str, db: &str, table: &str) -> bool {
    // Identifiers and the dots between them; anything else (a string
    // literal, punctuation) is no name.
    let mut idents: Vec<String> = Vec::new();
    for t in tokens(body(sql)) {
        match t {
            Tok::Ident(id) => idents.push(id),
            Tok::Word(w) => {
                for (i, part) in w.split('.').enumerate() {
                    if i > 0 {
                        idents.push(".".into());
                    }
                    if !part.is_empty() {
                        idents.push(part.to_string());
                    }
                }
            }
            Tok::Punct('.') => idents.push(".".into()),
            _ => idents.push(String::new()),
        }
    }
    idents.iter().enumerate().any(|(i, id)| {
        if !id.eq_ignore_ascii_case(table) {
            return false;
        }
        // `db`.`table`: the identifier before the dot.
        let qualified = i >= 2 && idents[i - 1] == ".";
        if qualified {
            idents[i - 2].eq_ignore_ascii_case(db)
        } else {
            schema.eq_ignore_ascii_case(db)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_edges_are_told_from_statements_inside_and_ddl() {
        assert_eq!(classify("BEGIN"), Statement::Begin);
        assert_eq!(classify("  start transaction"), Statement::Begin);
        assert_eq!(classify("COMMIT"), Statement::Commit);
        assert_eq!(classify("SAVEPOINT `s1`"), Statement::Other);
        assert_eq!(classify("RELEASE SAVEPOINT s1"), Statement::Other);
        assert_eq!(classify("ROLLBACK TO SAVEPOINT s1"), Statement::Other);
        assert_eq!(classify("ROLLBACK"), Statement::Rollback);
        assert_eq!(
            classify("/* app */ ALTER TABLE t ADD c INT"),
            Statement::Ddl
        );
        assert_eq!(classify("truncate table t"), Statement::Truncate);
        assert_eq!(classify("XA START 'x'"), Statement::Xa);
        assert_eq!(classify("GRANT SELECT ON *.* TO u"), Statement::Other);
    }

    #[test]
    fn a_table_is_named_as_a_whole_identifier() {
        assert!(names(
            "ALTER TABLE orders ADD c INT",
            "shop",
            "shop",
            "orders"
        ));
        assert!(names(
            "ALTER TABLE `shop`.`orders` ADD c INT",
            "other",
            "shop",
            "orders"
        ));
        assert!(names("TRUNCATE shop.orders", "x", "shop", "orders"));
        assert!(!names(
            "ALTER TABLE orders_archive ADD c INT",
            "shop",
            "shop",
            "orders"
        ));
        assert!(!names(
            "ALTER TABLE other.orders ADD c INT",
            "shop",
            "shop",
            "orders"
        ));
        assert!(!names(
            "ALTER TABLE orders ADD c INT",
            "other",
            "shop",
            "orders"
        ));
        assert!(!names(
            "ALTER TABLE t COMMENT 'orders'",
            "shop",
            "shop",
            "orders"
        ));
    }
}

/// A token of a statement, for reading `ADD COLUMN` clauses.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    /// A backquoted identifier.
    Ident(String),
    /// A string literal's text (quotes and escapes resolved).
    Str(String),
    Punct(char),
}

fn tokens(sql: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                let mut id = String::new();
                while let Some(n) = chars.next() {
                    if n == '`' {
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            id.push('`');
                        } else {
                            break;
                        }
                    } else {
                        id.push(n);
                    }
                }
                out.push(Tok::Ident(id));
            }
            '\'' | '"' => {
                let mut s = String::new();
                while let Some(n) = chars.next() {
                    if n == '\\' {
                        if let Some(e) = chars.next() {
                            s.push(match e {
                                'n' => '\n',
                                't' => '\t',
                                '0' => '\0',
                                other => other,
                            });
                        }
                    } else if n == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            s.push(c);
                        } else {
                            break;
                        }
                    } else {
                        s.push(n);
                    }
                }
                out.push(Tok::Str(s));
            }
            c if c.is_whitespace() => {}
            c if c.is_alphanumeric() || c == '_' || c == '$' || c == '.' => {
                let mut w = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_alphanumeric() || n == '_' || n == '$' || n == '.' {
                        w.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Word(w));
            }
            other => out.push(Tok::Punct(other)),
        }
    }
    out
}

/// The constant `DEFAULT` of each column an `ALTER TABLE … ADD [COLUMN]`
/// statement adds: what the rows already there got (the catalog may say
/// otherwise by the time the statement is read, or never have said it).
/// Strings come quoted (`'new'`), numbers bare; a column added without
/// one, or with an expression, is left out.
pub fn added_defaults(sql: &str) -> Vec<(String, String)> {
    let t = tokens(body(sql));
    let is =
        |i: usize, w: &str| matches!(t.get(i), Some(Tok::Word(x)) if x.eq_ignore_ascii_case(w));
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if !is(i, "ADD") {
            i += 1;
            continue;
        }
        i += 1;
        if is(i, "COLUMN") {
            i += 1;
        }
        if is(i, "IF") && is(i + 1, "NOT") && is(i + 2, "EXISTS") {
            i += 3;
        }
        let name = match t.get(i) {
            Some(Tok::Ident(n)) => n.clone(),
            // ADD INDEX, ADD CONSTRAINT …: not a column.
            Some(Tok::Word(w))
                if ![
                    "INDEX",
                    "KEY",
                    "PRIMARY",
                    "UNIQUE",
                    "CONSTRAINT",
                    "FOREIGN",
                    "FULLTEXT",
                    "SPATIAL",
                    "PARTITION",
                    "CHECK",
                    "PERIOD",
                    "SYSTEM",
                ]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k)) =>
            {
                w.clone()
            }
            _ => continue,
        };
        i += 1;
        // The clause runs to the next comma outside parentheses.
        let mut depth = 0i32;
        let mut default = None;
        while i < t.len() {
            match &t[i] {
                Tok::Punct('(') => depth += 1,
                Tok::Punct(')') => depth -= 1,
                Tok::Punct(',') | Tok::Punct(';') if depth <= 0 => break,
                Tok::Word(w) if depth == 0 && w.eq_ignore_ascii_case("DEFAULT") => {
                    default = match (t.get(i + 1), t.get(i + 2)) {
                        (Some(Tok::Str(s)), _) => Some(format!("'{}'", s.replace('\'', "''"))),
                        (Some(Tok::Punct('-')), Some(Tok::Word(n))) if n.parse::<f64>().is_ok() => {
                            Some(format!("-{n}"))
                        }
                        (Some(Tok::Word(n)), _) if n.parse::<f64>().is_ok() => Some(n.clone()),
                        _ => None,
                    };
                }
                _ => {}
            }
            i += 1;
        }
        if let Some(d) = default {
            out.push((name, d));
        }
    }
    out
}

#[cfg(test)]
mod added {
    use super::*;

    #[test]
    fn the_default_of_each_added_column_is_read_from_the_statement() {
        assert_eq!(
            added_defaults(
                "ALTER TABLE `items` ADD COLUMN `state` ENUM('new','paid') NOT NULL DEFAULT 'new', \
                 ADD grade DECIMAL(10,2) DEFAULT -1.5, ADD COLUMN plain INT, ADD INDEX (grade), \
                 ADD c2 TIMESTAMP DEFAULT CURRENT_TIMESTAMP, ADD c3 VARCHAR(9) DEFAULT 'it''s'"
            ),
            vec![
                ("state".to_string(), "'new'".to_string()),
                ("grade".to_string(), "-1.5".to_string()),
                ("c3".to_string(), "'it''s'".to_string()),
            ]
        );
        assert!(added_defaults("ALTER TABLE t MODIFY c INT DEFAULT 3").is_empty());
    }
}
