//! What a MySQL table's columns are, from `information_schema`: the type
//! each value is converted by ([`super::value`]) and the primary key its
//! events are keyed by.

use mysql_async::prelude::Queryable;
use strangler_config::TableName;

use crate::source::SourceError;

/// A column's type, as far as conversion cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MyType {
    /// `TINYINT` … `BIGINT`, `bits` wide.
    Int {
        bits: u8,
        unsigned: bool,
    },
    Float,
    Double,
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// `CHAR`, `VARCHAR`, `TEXT`…; `encoding` of the column's character
    /// set when it is not UTF-8 (its bytes in the binlog are in it).
    Text {
        encoding: Option<&'static encoding_rs::Encoding>,
    },
    /// `BINARY`, `VARBINARY`, `BLOB`…, spatial types; `pad`: `BINARY(n)`,
    /// whose trailing zero bytes the binlog leaves out.
    Binary {
        pad: Option<usize>,
    },
    Date,
    DateTime {
        fsp: u8,
    },
    Timestamp {
        fsp: u8,
    },
    Time {
        fsp: u8,
    },
    Year,
    Enum(Vec<String>),
    Set(Vec<String>),
    Bit(u32),
    Json,
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub ty: MyType,
    /// `COLUMN_TYPE` as the server writes it (`int(10) unsigned`).
    pub column_type: String,
    pub nullable: bool,
    /// `COLUMN_DEFAULT` as the server writes it (MariaDB quotes strings,
    /// MySQL does not; `NULL` and expressions as text).
    pub default: Option<String>,
}

/// A captured table's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub table: TableName,
    pub columns: Vec<Column>,
    /// Positions of the primary-key columns, in key order.
    pub key: Vec<usize>,
}

impl Shape {
    /// `db.table`.
    pub fn name(&self) -> String {
        self.table.to_string()
    }

    /// The shape of rows whose columns are `names` (the binlog's, in its
    /// order): each column's type from this shape by name; a column this
    /// shape no longer has (dropped or renamed since the row was written)
    /// is read as `fallback` gives it. `None` when a key column is absent.
    pub fn project(&self, names: &[String], fallback: impl Fn(usize) -> MyType) -> Option<Shape> {
        let columns: Vec<Column> = names
            .iter()
            .enumerate()
            .map(|(i, n)| match self.columns.iter().find(|c| c.name == *n) {
                Some(c) => c.clone(),
                None => Column {
                    name: n.clone(),
                    ty: fallback(i),
                    column_type: "unknown".into(),
                    nullable: true,
                    default: None,
                },
            })
            .collect();
        let key = self
            .key
            .iter()
            .map(|&k| columns.iter().position(|c| c.name == self.columns[k].name))
            .collect::<Option<Vec<_>>>()?;
        Some(Shape {
            table: self.table.clone(),
            columns,
            key,
        })
    }

    /// The shape as a schema-change record (`source/shape.rs`): each
    /// column with the PostgreSQL type it takes in a service
    /// ([`pg_type`]). MySQL has no stable column number, so no `position`:
    /// a sink tells columns apart by name (a renamed column arrives as a
    /// new one, the old one kept).
    pub fn record(&self, kind: &str, at: &crate::source::shape::At<'_>) -> crate::event::Record {
        let keys: Vec<&str> = self
            .key
            .iter()
            .map(|&k| self.columns[k].name.as_str())
            .collect();
        let columns = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ty = pg_type(c);
                serde_json::json!({
                    "name": c.name,
                    "typeName": ty.split('(').next().unwrap_or(&ty).trim(),
                    "typeExpression": ty,
                    "position": serde_json::Value::Null,
                    "optional": c.nullable,
                    "key": self.key.contains(&i),
                    "nativeType": c.column_type,
                    "defaultValueExpression": default_literal(c),
                })
            })
            .collect();
        crate::source::shape::build(
            "mysql",
            (&self.table.schema, &self.table.table),
            &keys,
            columns,
            kind,
            at,
        )
    }
}

/// A column's default as a literal for a service's column: a number, or a
/// string (MariaDB writes it quoted, MySQL bare); `None` for no default,
/// `NULL`, and expressions (`current_timestamp()`, `uuid()` …), which are
/// no constant. The sink checks it again (`sink/evolve.rs`).
pub fn default_literal(c: &Column) -> Option<String> {
    let d = c.default.as_deref()?.trim();
    if d.eq_ignore_ascii_case("NULL") {
        return None;
    }
    // A zero date is no date (PostgreSQL refuses it).
    let dated = matches!(
        c.ty,
        MyType::Date | MyType::DateTime { .. } | MyType::Timestamp { .. }
    );
    let unquoted = d.trim_matches('\'');
    if dated
        && (unquoted.starts_with("0000") || unquoted.get(4..8).is_some_and(|m| m.contains("-00")))
    {
        return None;
    }
    if let Some(inner) = d.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')) {
        // MariaDB: already a literal ('' for a quote, backslash escapes).
        return (!inner.contains('\\')).then(|| d.to_string());
    }
    let numeric = matches!(
        c.ty,
        MyType::Int { .. } | MyType::Float | MyType::Double | MyType::Decimal { .. } | MyType::Year
    );
    if numeric {
        return d.parse::<f64>().is_ok().then(|| d.to_string());
    }
    // MySQL writes a string default bare, and an expression too: an
    // expression has parentheses or is a time keyword.
    let expression = d.contains('(')
        || ["current_timestamp", "now", "localtime", "localtimestamp"]
            .iter()
            .any(|k| d.to_ascii_lowercase().starts_with(k));
    match c.ty {
        MyType::Text { .. }
        | MyType::Enum(_)
        | MyType::Set(_)
        | MyType::Date
        | MyType::DateTime { .. }
        | MyType::Timestamp { .. }
        | MyType::Time { .. }
            if !expression =>
        {
            Some(format!("'{}'", d.replace('\'', "''")))
        }
        _ => None,
    }
}

/// The PostgreSQL type a MySQL column takes in a service's table, as
/// PostgreSQL's `format_type` writes it (what a sink adds a new column as,
/// and compares type changes by).
pub fn pg_type(c: &Column) -> String {
    let length = || {
        c.column_type
            .find('(')
            .and_then(|a| c.column_type[a + 1..].split(')').next())
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    match &c.ty {
        MyType::Int { bits, unsigned } => match (bits, unsigned) {
            (8, _) | (16, false) => "smallint".into(),
            (16, true) | (24, _) | (32, false) => "integer".into(),
            (32, true) | (64, false) => "bigint".into(),
            _ => "numeric(20,0)".into(),
        },
        MyType::Float => "real".into(),
        MyType::Double => "double precision".into(),
        MyType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
        MyType::Text { .. } => {
            let lower = c.column_type.to_ascii_lowercase();
            match length() {
                Some(n) if lower.starts_with("varchar") || lower.starts_with("char") => {
                    format!("character varying({n})")
                }
                _ => "text".into(),
            }
        }
        MyType::Bit(1) => "boolean".into(),
        MyType::Binary { .. } | MyType::Bit(_) => "bytea".into(),
        MyType::Date => "date".into(),
        MyType::DateTime { fsp } => format!("timestamp({fsp}) without time zone"),
        MyType::Timestamp { fsp } => format!("timestamp({fsp}) with time zone"),
        MyType::Time { .. } => "interval".into(),
        MyType::Year => "smallint".into(),
        MyType::Enum(_) | MyType::Set(_) => "text".into(),
        MyType::Json => "jsonb".into(),
    }
}

/// The quoted `db`.`table`.
pub fn quoted(t: &TableName) -> String {
    format!("{}.{}", ident(&t.schema), ident(&t.table))
}

/// A quoted identifier.
pub fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// Reads `table`'s shape; an error names a table that is missing or has no
/// primary key (updates and deletes could not be applied).
pub async fn load(conn: &mut mysql_async::Conn, table: &TableName) -> Result<Shape, SourceError> {
    type Row = (
        String,
        String,
        String,
        String,
        Option<u64>,
        Option<u64>,
        Option<u64>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = conn
        .exec(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, NUMERIC_PRECISION, \
             NUMERIC_SCALE, DATETIME_PRECISION, CHARACTER_SET_NAME, COLUMN_DEFAULT \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? \
             ORDER BY ORDINAL_POSITION",
            (&table.schema, &table.table),
        )
        .await?;
    if rows.is_empty() {
        return Err(SourceError::Invalid(format!(
            "cdc.source.tables: table {table} does not exist in the source database (MySQL tables are named database.table)"
        )));
    }
    let key_names: Vec<String> = conn
        .exec(
            "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' \
             ORDER BY ORDINAL_POSITION",
            (&table.schema, &table.table),
        )
        .await?;
    let columns: Vec<Column> = rows
        .into_iter()
        .map(
            |(name, data_type, column_type, nullable, precision, scale, fsp, charset, default)| {
                Column {
                    ty: my_type(
                        &data_type.to_ascii_lowercase(),
                        &column_type,
                        (precision, scale, fsp),
                        charset.as_deref(),
                    ),
                    name,
                    column_type,
                    nullable: nullable == "YES",
                    default,
                }
            },
        )
        .collect();
    let key: Vec<usize> = key_names
        .iter()
        .filter_map(|k| columns.iter().position(|c| c.name == *k))
        .collect();
    if key.is_empty() {
        return Err(SourceError::Invalid(format!(
            "cdc.source.tables: table {table} has no primary key: its updates and deletes could not be applied to a target; add one (ALTER TABLE … ADD PRIMARY KEY)"
        )));
    }
    Ok(Shape {
        table: table.clone(),
        columns,
        key,
    })
}

fn my_type(
    data_type: &str,
    column_type: &str,
    (precision, scale, fsp): (Option<u64>, Option<u64>, Option<u64>),
    charset: Option<&str>,
) -> MyType {
    // Keywords in any case; ENUM and SET members as written.
    let unsigned = column_type.to_ascii_lowercase().contains("unsigned");
    let fsp = fsp.unwrap_or(0).min(6) as u8;
    match data_type {
        "tinyint" => MyType::Int { bits: 8, unsigned },
        "smallint" => MyType::Int { bits: 16, unsigned },
        "mediumint" => MyType::Int { bits: 24, unsigned },
        "int" | "integer" => MyType::Int { bits: 32, unsigned },
        "bigint" => MyType::Int { bits: 64, unsigned },
        "float" => MyType::Float,
        "double" | "real" => MyType::Double,
        "decimal" | "numeric" => MyType::Decimal {
            precision: precision.unwrap_or(10) as u32,
            scale: scale.unwrap_or(0) as u32,
        },
        "date" => MyType::Date,
        "datetime" => MyType::DateTime { fsp },
        "timestamp" => MyType::Timestamp { fsp },
        "time" => MyType::Time { fsp },
        "year" => MyType::Year,
        "enum" => MyType::Enum(members(column_type)),
        "set" => MyType::Set(members(column_type)),
        "bit" => MyType::Bit(precision.unwrap_or(1) as u32),
        "json" => MyType::Json,
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" => MyType::Text {
            encoding: charset.and_then(encoding),
        },
        "binary" => MyType::Binary {
            pad: column_type
                .find('(')
                .and_then(|a| column_type[a + 1..].split(')').next())
                .and_then(|n| n.trim().parse().ok()),
        },
        _ => MyType::Binary { pad: None },
    }
}

/// The encoding of a MySQL character set, `None` for UTF-8 (and for sets
/// with no encoding here, whose bytes are then read as UTF-8).
pub fn encoding(charset: &str) -> Option<&'static encoding_rs::Encoding> {
    let label = match charset {
        "utf8" | "utf8mb3" | "utf8mb4" | "ascii" | "binary" => return None,
        // MySQL's latin1 is Windows-1252.
        "latin1" => "windows-1252",
        "latin2" => "iso-8859-2",
        "latin5" => "iso-8859-9",
        "latin7" => "iso-8859-13",
        "cp1250" => "windows-1250",
        "cp1251" => "windows-1251",
        "cp1256" => "windows-1256",
        "cp1257" => "windows-1257",
        "cp866" => "ibm866",
        "koi8r" => "koi8-r",
        "koi8u" => "koi8-u",
        "greek" => "iso-8859-7",
        "hebrew" => "iso-8859-8",
        "sjis" | "cp932" => "shift_jis",
        "ujis" | "eucjpms" => "euc-jp",
        "euckr" => "euc-kr",
        "gbk" | "gb2312" => "gbk",
        "gb18030" => "gb18030",
        "big5" => "big5",
        "utf16" | "ucs2" => "utf-16be",
        "utf16le" => "utf-16le",
        _ => return None,
    };
    encoding_rs::Encoding::for_label(label.as_bytes())
}

/// The members of `enum('a','b')` / `set('a','b')`, unquoted.
fn members(column_type: &str) -> Vec<String> {
    let Some(inner) = column_type
        .find('(')
        .and_then(|o| column_type.rfind(')').map(|c| &column_type[o + 1..c]))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    let mut quoted = false;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (false, '\'') => quoted = true,
            (false, ',') => out.push(std::mem::take(&mut cur)),
            (false, _) => {}
            (true, '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                cur.push('\'');
            }
            (true, '\'') => quoted = false,
            (true, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (true, c) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_members_are_unquoted() {
        assert_eq!(
            members("enum('new','it''s','a,b')"),
            vec!["new", "it's", "a,b"]
        );
        assert_eq!(members("set('x')"), vec!["x"]);
    }

    #[test]
    fn constant_defaults_become_literals() {
        let col = |ty: MyType, d: &str| Column {
            name: "c".into(),
            ty,
            column_type: "t".into(),
            nullable: false,
            default: Some(d.into()),
        };
        let text = MyType::Text { encoding: None };
        let int = MyType::Int {
            bits: 32,
            unsigned: false,
        };
        let ts = MyType::Timestamp { fsp: 0 };
        for (c, want) in [
            (col(text.clone(), "'new'"), Some("'new'")),
            (col(text.clone(), "it's"), Some("'it''s'")),
            (col(MyType::Enum(vec!["new".into()]), "new"), Some("'new'")),
            (col(int.clone(), "3"), Some("3")),
            (col(int, "x"), None),
            (col(text, "NULL"), None),
            (col(ts.clone(), "current_timestamp()"), None),
            (col(ts.clone(), "CURRENT_TIMESTAMP"), None),
            (col(ts, "'0000-00-00 00:00:00'"), None),
            (col(MyType::Date, "2024-00-00"), None),
        ] {
            assert_eq!(default_literal(&c).as_deref(), want, "{:?}", c.default);
        }
    }

    #[test]
    fn services_get_postgresql_types() {
        let col = |ty: MyType, column_type: &str| Column {
            name: "c".into(),
            ty,
            column_type: column_type.into(),
            nullable: true,
            default: None,
        };
        let cases = [
            (
                col(
                    MyType::Int {
                        bits: 32,
                        unsigned: false,
                    },
                    "int(11)",
                ),
                "integer",
            ),
            (
                col(
                    MyType::Int {
                        bits: 32,
                        unsigned: true,
                    },
                    "int(10) unsigned",
                ),
                "bigint",
            ),
            (
                col(
                    MyType::Int {
                        bits: 64,
                        unsigned: true,
                    },
                    "bigint(20) unsigned",
                ),
                "numeric(20,0)",
            ),
            (
                col(MyType::Text { encoding: None }, "varchar(40)"),
                "character varying(40)",
            ),
            (col(MyType::Text { encoding: None }, "mediumtext"), "text"),
            (
                col(
                    MyType::Decimal {
                        precision: 10,
                        scale: 2,
                    },
                    "decimal(10,2)",
                ),
                "numeric(10,2)",
            ),
            (
                col(MyType::DateTime { fsp: 3 }, "datetime(3)"),
                "timestamp(3) without time zone",
            ),
            (col(MyType::Bit(1), "bit(1)"), "boolean"),
            (col(MyType::Bit(8), "bit(8)"), "bytea"),
        ];
        for (c, want) in cases {
            assert_eq!(pg_type(&c), want, "{}", c.column_type);
        }
    }

    #[test]
    fn types_are_read_from_information_schema() {
        assert_eq!(
            my_type("int", "int(10) unsigned", (Some(10), Some(0), None), None),
            MyType::Int {
                bits: 32,
                unsigned: true
            }
        );
        assert_eq!(
            my_type("datetime", "datetime(3)", (None, None, Some(3)), None),
            MyType::DateTime { fsp: 3 }
        );
        assert_eq!(
            my_type("varchar", "varchar(20)", (None, None, None), Some("latin1")),
            MyType::Text {
                encoding: encoding_rs::Encoding::for_label(b"windows-1252")
            }
        );
        assert_eq!(
            my_type("enum", "enum('PENDING','Paid')", (None, None, None), None),
            MyType::Enum(vec!["PENDING".into(), "Paid".into()])
        );
        assert_eq!(
            my_type("binary", "binary(16)", (None, None, None), None),
            MyType::Binary { pad: Some(16) }
        );
    }
}
