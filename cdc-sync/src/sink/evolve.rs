//! Schema changes of a source table carried to a sink's target.
//!
//! The stream places a schema-change record before the first change of
//! each table in a session and before the first change after its shape
//! changed (`source/shape.rs`). The sink keeps the last shape it saw per
//! table (`strangler_cdc_source_shapes`) and applies the difference to the
//! target, through the table mapping, before the rows that follow:
//!
//! - a column added: added to the target (nullable, the source's type),
//!   unless excluded;
//! - a column dropped: kept in the target, `NOT NULL` dropped, so it holds
//!   nulls from then on (dropped too with the mapping's `drop_columns`);
//! - a column renamed (same `attnum`): renamed in the target; where the
//!   mapping renames it, the new name maps to the same target column;
//! - a type widened (the target's type was the old one, the new one holds
//!   every old value: `integer` → `bigint`, `varchar(20)` → `varchar(80)`,
//!   `numeric(10,2)` → `numeric(14,2)`, numbers, text and booleans →
//!   `text`; not types whose text depends on the session): the target's
//!   column is changed too; a target column that already takes every value
//!   of the new type is left alone;
//! - any other type change stops the sink ([`SinkError::SchemaChange`])
//!   naming the change and the way out.
//!
//! The first shape a sink sees of a table is its baseline: source columns
//! its target lacks (and the mapping does not exclude) are reported once.

use serde_json::Value;
use sqlx::{PgConnection, Row};

use super::target::{quote, TargetTable};
use super::SinkError;
use crate::event::Record;
use crate::lsn::Lsn;
use crate::types::Catalog;

/// The bookkeeping table of the shapes sinks saw last.
pub(super) const SHAPES_TABLE: &str = "CREATE TABLE IF NOT EXISTS strangler_cdc_source_shapes (
        sink TEXT NOT NULL,
        slot TEXT NOT NULL,
        source_table TEXT NOT NULL,
        columns JSONB NOT NULL,
        lsn BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, slot, source_table))";

/// One source column as a schema-change record describes it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Column {
    pub name: String,
    pub type_expr: String,
    /// `attnum`, when known.
    pub position: Option<i64>,
    /// The source's default when it is a constant (Debezium's
    /// `defaultValueExpression`), as a literal safe in DDL
    /// ([`literal_default`]): a column added with one gets it for the
    /// rows already there, as on the source.
    pub default: Option<String>,
}

fn parse(columns: &[Value]) -> Vec<Column> {
    columns
        .iter()
        .filter_map(|c| {
            Some(Column {
                name: c.get("name")?.as_str()?.to_string(),
                type_expr: c.get("typeExpression")?.as_str()?.to_string(),
                position: c.get("position").and_then(Value::as_i64),
                default: c
                    .get("defaultValueExpression")
                    .and_then(Value::as_str)
                    .and_then(literal_default),
            })
        })
        .collect()
}

/// A default expression as a literal this sink writes into DDL itself: a
/// number, `true`/`false`, or a string (re-quoted here), with an outer
/// cast (`'new'::text`) and parentheses taken off — anything else (a
/// function such as `now()`, `nextval(…)`, an expression) is no constant
/// and gives `None`. Schema records may come through a broker: nothing
/// from them reaches DDL unchecked.
pub(crate) fn literal_default(expr: &str) -> Option<String> {
    let mut e = expr.trim();
    while let Some(inner) = e.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        e = inner.trim();
    }
    // An outer cast to a type name (letters, digits, spaces, parentheses
    // of modifiers, brackets): taken off, the target's column type rules.
    if let Some(at) = e.rfind("::") {
        let ty = &e[at + 2..];
        if ty
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _(),[]".contains(c))
        {
            e = e[..at].trim();
        }
    }
    let number = {
        let digits = e.strip_prefix('-').unwrap_or(e);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
        !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && !frac.is_empty()
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    if number {
        return Some(e.to_string());
    }
    if e.eq_ignore_ascii_case("true") || e.eq_ignore_ascii_case("false") {
        return Some(e.to_ascii_lowercase());
    }
    let inner = e.strip_prefix('\'')?.strip_suffix('\'')?;
    // Only doubled quotes inside.
    let text = inner.replace("''", "\u{0}");
    if text.contains('\'') || text.contains('\\') {
        return None;
    }
    Some(format!("'{}'", text.replace('\u{0}', "''")))
}

/// What changed between two shapes of a table.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Change {
    Add(Column),
    Drop(Column),
    Rename {
        from: String,
        to: String,
    },
    Retype {
        column: String,
        from: String,
        to: String,
    },
}

/// The changes from `old` to `new`: columns are the same column when their
/// `attnum` is (or, without one, their name).
pub(super) fn diff(old: &[Column], new: &[Column]) -> Vec<Change> {
    let same = |a: &Column, b: &Column| match (a.position, b.position) {
        (Some(x), Some(y)) => x == y,
        _ => a.name == b.name,
    };
    let mut out = Vec::new();
    for o in old {
        match new.iter().find(|n| same(o, n)) {
            None => out.push(Change::Drop(o.clone())),
            Some(n) => {
                if n.name != o.name {
                    out.push(Change::Rename {
                        from: o.name.clone(),
                        to: n.name.clone(),
                    });
                }
                if n.type_expr != o.type_expr {
                    out.push(Change::Retype {
                        column: n.name.clone(),
                        from: o.type_expr.clone(),
                        to: n.type_expr.clone(),
                    });
                }
            }
        }
    }
    for n in new {
        if !old.iter().any(|o| same(o, n)) {
            out.push(Change::Add(n.clone()));
        }
    }
    out
}

/// A type expression as (base name, modifiers): `numeric(10,2)` →
/// (`numeric`, [10, 2]); `timestamp(3) without time zone` → (`timestamp
/// without time zone`, [3]).
fn type_parts(expr: &str) -> (String, Vec<i64>) {
    let (base, mods) = match (expr.find('('), expr.find(')')) {
        (Some(a), Some(b)) if b > a => (
            format!("{}{}", &expr[..a], &expr[b + 1..]),
            expr[a + 1..b]
                .split(',')
                .filter_map(|m| m.trim().parse().ok())
                .collect(),
        ),
        _ => (expr.to_string(), Vec::new()),
    };
    let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
    (base, mods)
}

/// Whether every value of type `from` is a value of type `to`, unchanged.
pub(super) fn widens(from: &str, to: &str) -> bool {
    if from == to {
        return true;
    }
    let (f, fm) = type_parts(from);
    let (t, tm) = type_parts(to);
    let integer_rank = |b: &str| match b {
        "smallint" => Some(0),
        "integer" => Some(1),
        "bigint" => Some(2),
        _ => None,
    };
    // Digits before the decimal point each integer type needs.
    let integer_digits = |b: &str| match b {
        "smallint" => 5,
        "integer" => 10,
        _ => 19,
    };
    // Types whose text form does not depend on the session (time zone,
    // date style, float digits, bytea output): the target's rows turn into
    // the same text the source's did.
    let plain_text = |b: &str| {
        integer_rank(b).is_some()
            || matches!(
                b,
                "text" | "character varying" | "character" | "numeric" | "boolean" | "uuid"
            )
    };
    if tm.iter().chain(&fm).any(|m| *m < 0) {
        // A negative numeric scale rounds.
        return false;
    }
    match (f.as_str(), t.as_str()) {
        (a, "text") => plain_text(a),
        (a, "character varying") if tm.is_empty() => plain_text(a),
        ("character varying" | "text" | "character", "character varying") => {
            matches!((fm.first(), tm.first()), (Some(a), Some(b)) if b >= a)
        }
        (a, b) if integer_rank(a).is_some() && integer_rank(b).is_some() => {
            integer_rank(a) <= integer_rank(b)
        }
        (a, "numeric") if integer_rank(a).is_some() => match tm.as_slice() {
            [] => true,
            [p] => *p >= integer_digits(a),
            [p, s, ..] => p - s >= integer_digits(a),
        },
        ("smallint" | "integer", "double precision") | ("smallint", "real") => true,
        ("real", "double precision") => true,
        ("numeric", "numeric") => match (fm.as_slice(), tm.as_slice()) {
            (_, []) => true,
            ([], _) => false,
            (f, t) => {
                let (fp, fs) = (f[0], f.get(1).copied().unwrap_or(0));
                let (tp, ts) = (t[0], t.get(1).copied().unwrap_or(0));
                ts >= fs && tp - ts >= fp - fs
            }
        },
        ("timestamp without time zone", "timestamp without time zone")
        | ("timestamp with time zone", "timestamp with time zone")
        | ("time without time zone", "time without time zone")
        | ("time with time zone", "time with time zone") => {
            tm.first().copied().unwrap_or(6) >= fm.first().copied().unwrap_or(6)
        }
        ("json", "jsonb") => false,
        _ => false,
    }
}

/// Whether `expr` is a type and nothing else (it goes into DDL on the
/// target): a name, modifiers in parentheses, `[]`, `with`/`without time
/// zone` — and PostgreSQL reads it as a type.
async fn check_type(conn: &mut PgConnection, expr: &str) -> Result<(), String> {
    if !plain_type(expr) {
        return Err(format!("{expr:?} is not a type expression"));
    }
    sqlx::query("SELECT $1::regtype")
        .bind(expr)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| {
            format!("type {expr} does not exist in the target: {e} (create it there, or exclude the column)")
        })
}

/// A type's name, modifiers and array brackets, and nothing that would
/// make DDL do more (a second subcommand, a default, a constraint).
fn plain_type(expr: &str) -> bool {
    let mut depth = 0i32;
    let plain = expr.chars().all(|ch| match ch {
        '(' => {
            depth += 1;
            true
        }
        ')' => {
            depth -= 1;
            depth >= 0
        }
        ',' => depth == 1,
        c => c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '[' | ']' | '.' | '"'),
    }) && depth == 0
        && !expr.to_ascii_lowercase().split_whitespace().any(|w| {
            matches!(
                w,
                "default"
                    | "collate"
                    | "constraint"
                    | "not"
                    | "null"
                    | "check"
                    | "references"
                    | "generated"
                    | "using"
            )
        });
    plain
}

/// The shape `sink` stored last for `table`, and the source position of
/// the record it came from.
async fn stored(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    table: &str,
) -> Result<Option<(Vec<Column>, Lsn)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT columns, lsn FROM strangler_cdc_source_shapes WHERE sink = $1 AND slot = $2 AND source_table = $3",
    )
    .bind(sink)
    .bind(slot)
    .bind(table)
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => {
            let v: Value = r.try_get(0)?;
            Some((
                parse(v.as_array().map(Vec::as_slice).unwrap_or_default()),
                Lsn::from_i64(r.try_get(1)?),
            ))
        }
        None => None,
    })
}

async fn store(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    table: &str,
    columns: &[Value],
    lsn: Lsn,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO strangler_cdc_source_shapes (sink, slot, source_table, columns, lsn) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (sink, slot, source_table) DO UPDATE SET columns = excluded.columns, lsn = excluded.lsn, updated_at = now()",
    )
    .bind(sink)
    .bind(slot)
    .bind(table)
    .bind(Value::Array(columns.to_vec()))
    .bind(lsn.as_i64())
    .execute(conn)
    .await?;
    Ok(())
}

/// Source columns `t` lacks (and its mapping does not exclude) are not
/// copied: said once, when a sink first sees the table's shape.
fn warn_missing(sink: &str, table: &str, t: &TargetTable, columns: &[Column]) {
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| !t.mapping.exclude.contains(&c.name))
        .map(|c| t.mapping.rename.get(&c.name).unwrap_or(&c.name).as_str())
        .filter(|c| !t.columns.contains_key(*c))
        .collect();
    if !missing.is_empty() {
        tracing::warn!(
            sink,
            table,
            target = %t.qualified,
            columns = %missing.join(", "),
            "source columns the target lacks are not copied: add them to the target or to the mapping's `exclude`"
        );
    }
}

/// Applies the schema-change record `r` to `t` (the target of its table)
/// on `conn`, inside the transaction open there, and stores the new shape.
/// `t` is read again from the target when anything changed.
pub(super) async fn apply(
    conn: &mut PgConnection,
    sink: &str,
    slot: &str,
    t: &mut TargetTable,
    r: &Record,
) -> Result<(), SinkError> {
    let Some(raw) = crate::source::shape::of(r) else {
        return Ok(());
    };
    let db = |e: sqlx::Error| SinkError::Database {
        sink: sink.to_string(),
        source: e,
    };
    let new = parse(raw);
    // Workers of one sink read the same changes: one applies each.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('strangler-shape/' || $1 || '/' || $2, 0))",
    )
    .bind(sink)
    .bind(&r.table)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    let Some((old, at)) = stored(conn, sink, slot, &r.table).await.map_err(db)? else {
        warn_missing(sink, &r.table, t, &new);
        store(conn, sink, slot, &r.table, raw, r.commit_lsn)
            .await
            .map_err(db)?;
        return Ok(());
    };
    if r.commit_lsn < at {
        // An older shape read again (a replay, the schema topic from its
        // start): what followed it is applied already.
        return Ok(());
    }
    // Stored already: another worker of the sink applied it, and this
    // one's view of the target is older.
    let stale = r.commit_lsn.0 > 0 && r.commit_lsn == at;
    let changes = diff(&old, &new);
    // A name renamed away and added again is a new column.
    for c in &changes {
        if let Change::Rename { from, .. } = c {
            if changes
                .iter()
                .any(|a| matches!(a, Change::Add(n) if n.name == *from))
            {
                t.mapping.rename.remove(from);
            }
        }
    }
    let mut ddl = Vec::new();
    for change in &changes {
        if let Some(sql) = plan(sink, &r.table, t, change)? {
            // A type from the source goes into the DDL: it must be one.
            if let Change::Add(Column { type_expr, .. }) | Change::Retype { to: type_expr, .. } =
                change
            {
                check_type(conn, type_expr)
                    .await
                    .map_err(|message| SinkError::SchemaChange {
                        sink: sink.to_string(),
                        table: r.table.clone(),
                        message,
                    })?;
            }
            ddl.push(sql);
        }
    }
    for sql in &ddl {
        sqlx::query(sql).execute(&mut *conn).await.map_err(|e| {
            if strangler_state::retry::sqlx_retryable(&e) {
                db(e)
            } else {
                SinkError::SchemaChange {
                    sink: sink.to_string(),
                    table: r.table.clone(),
                    message: format!("{sql}: {e}"),
                }
            }
        })?;
        tracing::info!(sink, table = %r.table, ddl = %sql, "source schema change applied to the target");
    }
    store(conn, sink, slot, &r.table, raw, r.commit_lsn)
        .await
        .map_err(db)?;
    if !ddl.is_empty() || stale {
        let catalog = Catalog::load(&mut *conn).await.map_err(db)?;
        // The mapping's in-memory additions (renamed source columns)
        // survive the reload.
        let mapping = t.mapping.clone();
        *t = TargetTable::load(conn, &mapping, &catalog, t.format)
            .await
            .map_err(|e| match e {
                super::target::LoadError::Db(e) => db(e),
                super::target::LoadError::Schema(message) => SinkError::Schema {
                    sink: sink.to_string(),
                    message,
                },
            })?;
    }
    Ok(())
}

/// The DDL on the target for one change (`None`: nothing to do), or the
/// error that stops the sink.
fn plan(
    sink: &str,
    table: &str,
    t: &mut TargetTable,
    change: &Change,
) -> Result<Option<String>, SinkError> {
    let excluded = |t: &TargetTable, c: &str| t.mapping.exclude.iter().any(|e| e == c);
    let target_of = |t: &TargetTable, c: &str| -> String {
        t.mapping
            .rename
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    };
    Ok(match change {
        Change::Add(c) => {
            let dst = target_of(t, &c.name);
            (!excluded(t, &c.name) && !t.columns.contains_key(&dst)).then(|| {
                format!(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}",
                    t.qualified,
                    quote(&dst),
                    c.type_expr,
                    c.default
                        .as_ref()
                        .map_or(String::new(), |d| format!(" DEFAULT {d}"))
                )
            })
        }
        Change::Drop(c) => {
            let dst = target_of(t, &c.name);
            // Dropped in the target only when the column is known by its
            // attnum (a name match alone may be a rename read wrong).
            let drop = t.mapping.drop_columns && c.position.is_some();
            if drop {
                t.mapping.rename.retain(|_, v| *v != dst);
            }
            (!excluded(t, &c.name) && t.columns.contains_key(&dst) && !t.primary_key.contains(&dst))
                .then(|| {
                    if drop {
                        format!(
                            "ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                            t.qualified,
                            quote(&dst)
                        )
                    } else {
                        format!(
                            "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL",
                            t.qualified,
                            quote(&dst)
                        )
                    }
                })
        }
        Change::Rename { from, to } => {
            if excluded(t, from) {
                t.mapping.exclude.push(to.clone());
                None
            } else if let Some(dst) = t.mapping.rename.get(from).cloned() {
                tracing::warn!(sink, table, from, to, target = %dst, "a renamed source column keeps its mapping: rename it in `[[cdc.sinks.tables]]` too");
                t.mapping.rename.insert(to.clone(), dst);
                None
            } else if t.columns.contains_key(from) && !t.columns.contains_key(to) {
                // Rows of the old shape were written before (in order, in
                // this transaction); a type change of the column follows
                // under its new name.
                if let Some(mut c) = t.columns.remove(from) {
                    c.name.clone_from(to);
                    t.columns.insert(to.clone(), c);
                }
                Some(format!(
                    "ALTER TABLE {} RENAME COLUMN {} TO {}",
                    t.qualified,
                    quote(from),
                    quote(to)
                ))
            } else {
                None
            }
        }
        Change::Retype { column, from, to } => {
            let dst = target_of(t, column);
            let Some(target) = t.columns.get(&dst) else {
                return Ok(None);
            };
            if excluded(t, column) || widens(to, &target.type_name) {
                None
            } else if target.type_name == *from && widens(from, to) {
                Some(format!(
                    "ALTER TABLE {0} ALTER COLUMN {1} TYPE {2} USING {1}::{2}",
                    t.qualified,
                    quote(&dst),
                    to
                ))
            } else {
                return Err(SinkError::SchemaChange {
                    sink: sink.to_string(),
                    table: table.to_string(),
                    message: format!(
                        "column {column} changed type from {from} to {to} on the source; its target {}.{} is {}, which cannot take every value of {to} unchanged",
                        t.qualified,
                        quote(&dst),
                        target.type_name
                    ),
                });
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str, pos: i64) -> Column {
        Column {
            name: name.into(),
            type_expr: ty.into(),
            position: Some(pos),
            default: None,
        }
    }

    #[test]
    fn only_constant_defaults_reach_ddl() {
        for (expr, want) in [
            ("0", Some("0")),
            ("-12.50", Some("-12.50")),
            ("'new'::text", Some("'new'")),
            ("('it''s'::character varying)", Some("'it''s'")),
            ("'new'", Some("'new'")),
            ("false", Some("false")),
            ("now()", None),
            ("nextval('items_id_seq'::regclass)", None),
            ("'a' || 'b'", None),
            ("'x'); DROP TABLE t; --'", None),
            ("1; DROP TABLE t", None),
        ] {
            assert_eq!(literal_default(expr).as_deref(), want, "{expr}");
        }
    }

    #[test]
    fn changes_are_told_apart_by_attnum() {
        let old = vec![
            col("id", "bigint", 1),
            col("name", "text", 2),
            col("qty", "integer", 3),
        ];
        let new = vec![
            col("id", "bigint", 1),
            col("quantity", "bigint", 3),
            col("price", "numeric(10,2)", 4),
        ];
        assert_eq!(
            diff(&old, &new),
            vec![
                Change::Drop(col("name", "text", 2)),
                Change::Rename {
                    from: "qty".into(),
                    to: "quantity".into()
                },
                Change::Retype {
                    column: "quantity".into(),
                    from: "integer".into(),
                    to: "bigint".into()
                },
                Change::Add(col("price", "numeric(10,2)", 4)),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn only_a_type_goes_into_ddl() {
        for t in [
            "numeric(10,2)",
            "character varying(80)",
            "timestamp(3) without time zone",
            "integer[]",
            "public.\"Mood\"",
        ] {
            assert!(plain_type(t), "{t}");
        }
        for t in [
            "text, DROP COLUMN id",
            "text DEFAULT now()",
            "text; DROP TABLE x",
            "text NOT NULL",
            "integer COLLATE \"C\"",
            "numeric(10,2))",
        ] {
            assert!(!plain_type(t), "{t}");
        }
    }

    #[test]
    fn only_types_that_keep_every_value_widen() {
        for (from, to) in [
            ("integer", "bigint"),
            ("smallint", "integer"),
            ("integer", "numeric"),
            ("integer", "numeric(12,2)"),
            ("character varying(20)", "character varying(80)"),
            ("character varying(20)", "text"),
            ("character varying(20)", "character varying"),
            ("numeric(10,2)", "numeric(14,4)"),
            ("numeric(10,2)", "numeric"),
            ("real", "double precision"),
            (
                "timestamp(3) without time zone",
                "timestamp without time zone",
            ),
            ("boolean", "text"),
            ("numeric(10,2)", "character varying"),
        ] {
            assert!(widens(from, to), "{from} → {to}");
        }
        for (from, to) in [
            ("bigint", "integer"),
            ("text", "integer"),
            ("character varying(80)", "character varying(20)"),
            ("numeric(10,2)", "numeric(10,3)"),
            ("numeric", "numeric(10,2)"),
            ("bigint", "double precision"),
            ("integer", "numeric(9,0)"),
            ("timestamp without time zone", "timestamp with time zone"),
            (
                "timestamp without time zone",
                "timestamp(3) without time zone",
            ),
            ("text", "character varying(10)"),
            ("timestamp with time zone", "text"),
            ("double precision", "text"),
            ("bytea", "text"),
            ("integer", "numeric(12,-2)"),
        ] {
            assert!(!widens(from, to), "{from} ↛ {to}");
        }
    }
}
