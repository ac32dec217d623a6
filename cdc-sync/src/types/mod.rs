//! One conversion per PostgreSQL type, shared by every path.
//!
//! ```text
//!  snapshot (COPY … TO STDOUT, text) ─┐                 ┌─ Kafka: Debezium JSON (+ header
//!                                     ├─ PG text ─ encode ┤   `strangler.exact` when lossy)
//!  stream (pgoutput, text format) ────┘                 └─ embedded: the same Record
//!                                                                 │
//!  sink: decode(JSON, target column kind) or the exact text ─ PG input text ─ $n::type
//! ```
//!
//! Both source paths receive a value as the type's output function writes
//! it (`COPY` text format and pgoutput's text mode are the same function),
//! so there is one parser per type: [`encode`] turns that text into
//! Debezium's representation under the configured [`EventFormat`]. Where a
//! representation cannot be read back exactly (a `MicroDuration` counts a
//! month as 30.4375 days, `ZonedTime` drops the offset, a fixed-scale
//! `Decimal` needs its scale from a schema, milliseconds for `time(6)` …)
//! the record also carries the value's PostgreSQL text ([`Encoded::exact`]
//! is false), and the sink writes that text instead. [`decode`] is the
//! sink's way back from every exact representation. The table of every
//! type, its representation under each option and how it is written back
//! is `cdc-sync/TYPES.md`.

pub(crate) mod decimal;
pub mod decode;
pub mod encode;
pub mod schema;
pub mod text;

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

pub use decode::decode;
pub use encode::{encode, Encoded};
pub use strangler_config::{
    BinaryHandling, DecimalHandling, EventFormat, IntervalHandling, TimePrecision,
};

/// What a column's values are, for conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int16,
    Int32,
    /// `int8` and `oid`.
    Int64,
    Float32,
    Float64,
    /// `scale: None` for `numeric` without a declared scale.
    Numeric {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Bytea,
    Date,
    /// Fractional digits, 0..=6.
    Time(u8),
    TimeTz,
    Timestamp(u8),
    TimestampTz,
    Interval,
    Uuid,
    Json,
    Jsonb,
    Enum,
    /// Everything carried as its text: text, varchar, char(n), inet, cidr,
    /// macaddr, xml, money, ranges, geometric types, …
    Text,
    /// A one- or more-dimensional array of the element kind.
    Array(Box<Kind>),
}

/// What `pg_type` says about one type.
#[derive(Debug, Clone)]
struct TypeInfo {
    name: String,
    builtin: bool,
    typtype: char,
    category: char,
    elem: u32,
    base: u32,
    base_typmod: i32,
    delim: char,
}

/// The types of one database (`pg_type`), for resolving columns.
#[derive(Debug, Clone, Default)]
pub struct Catalog(HashMap<u32, TypeInfo>);

impl Catalog {
    /// Reads `pg_type`.
    pub async fn load(conn: &mut PgConnection) -> Result<Catalog, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT t.oid::int8, t.typname::text, n.nspname = 'pg_catalog', t.typtype::text, \
                    t.typcategory::text, t.typelem::int8, t.typbasetype::int8, t.typtypmod, t.typdelim::text \
             FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace",
        )
        .fetch_all(conn)
        .await?;
        let mut map = HashMap::with_capacity(rows.len());
        for r in rows {
            let ch = |s: String| s.chars().next().unwrap_or(' ');
            map.insert(
                u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(0),
                TypeInfo {
                    name: r.try_get(1)?,
                    builtin: r.try_get(2)?,
                    typtype: ch(r.try_get(3)?),
                    category: ch(r.try_get(4)?),
                    elem: u32::try_from(r.try_get::<i64, _>(5)?).unwrap_or(0),
                    base: u32::try_from(r.try_get::<i64, _>(6)?).unwrap_or(0),
                    base_typmod: r.try_get(7)?,
                    delim: ch(r.try_get(8)?),
                },
            );
        }
        Ok(Catalog(map))
    }

    /// Whether the catalog knows `oid` (a type created after it was read
    /// is not known).
    pub fn knows(&self, oid: u32) -> bool {
        self.0.contains_key(&oid)
    }

    /// The kind of a column of type `oid` with modifier `typmod`
    /// (`atttypmod`; -1 when none). Unknown types are carried as text.
    pub fn kind(&self, oid: u32, typmod: i32) -> Kind {
        self.kind_at(oid, typmod, 0)
    }

    fn kind_at(&self, oid: u32, typmod: i32, depth: u8) -> Kind {
        let Some(t) = self.0.get(&oid) else {
            return Kind::Text;
        };
        if depth > 8 {
            return Kind::Text;
        }
        match t.typtype {
            // A domain is its base type, with the domain's modifier.
            'd' => {
                let m = if typmod == -1 { t.base_typmod } else { typmod };
                return self.kind_at(t.base, m, depth + 1);
            }
            'e' => return Kind::Enum,
            _ => {}
        }
        if t.category == 'A' && t.elem != 0 {
            // Arrays of types with another delimiter (box uses ';') stay text.
            return match self.0.get(&t.elem) {
                Some(e) if e.delim == ',' => {
                    Kind::Array(Box::new(self.kind_at(t.elem, typmod, depth + 1)))
                }
                _ => Kind::Text,
            };
        }
        if !t.builtin {
            return Kind::Text;
        }
        builtin_kind(&t.name, typmod)
    }
}

/// Fractional-second digits of a `time`/`timestamp` modifier.
fn precision(typmod: i32) -> u8 {
    u8::try_from(typmod).map_or(6, |p| p.min(6))
}

fn builtin_kind(name: &str, typmod: i32) -> Kind {
    match name {
        "bool" => Kind::Bool,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" | "oid" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "numeric" => {
            // typmod = ((precision << 16) | scale) + 4, or -1.
            let m = u32::try_from(typmod - 4).ok().filter(|_| typmod >= 4);
            Kind::Numeric {
                precision: m.map(|m| m >> 16),
                scale: m.map(|m| m & 0xffff),
            }
        }
        "bytea" => Kind::Bytea,
        "date" => Kind::Date,
        "time" => Kind::Time(precision(typmod)),
        "timetz" => Kind::TimeTz,
        "timestamp" => Kind::Timestamp(precision(typmod)),
        "timestamptz" => Kind::TimestampTz,
        "interval" => Kind::Interval,
        "uuid" => Kind::Uuid,
        "json" => Kind::Json,
        "jsonb" => Kind::Jsonb,
        _ => Kind::Text,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A catalog with the built-in types the unit tests use.
    pub fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let mut add =
            |oid: u32, name: &str, typtype: char, category: char, elem: u32, base: u32| {
                c.0.insert(
                    oid,
                    TypeInfo {
                        name: name.into(),
                        builtin: true,
                        typtype,
                        category,
                        elem,
                        base,
                        base_typmod: -1,
                        delim: ',',
                    },
                );
            };
        add(16, "bool", 'b', 'B', 0, 0);
        add(23, "int4", 'b', 'N', 0, 0);
        add(1700, "numeric", 'b', 'N', 0, 0);
        add(1007, "_int4", 'b', 'A', 23, 0);
        add(90_000, "money_domain", 'd', 'N', 0, 1700);
        add(90_001, "mood", 'e', 'E', 0, 0);
        c
    }

    #[test]
    fn resolves_domains_arrays_enums_and_modifiers() {
        let c = catalog();
        assert_eq!(c.kind(16, -1), Kind::Bool);
        assert_eq!(c.kind(1007, -1), Kind::Array(Box::new(Kind::Int32)));
        assert_eq!(
            c.kind(1700, (10 << 16 | 2) + 4),
            Kind::Numeric {
                precision: Some(10),
                scale: Some(2)
            }
        );
        assert_eq!(
            c.kind(90_000, -1),
            Kind::Numeric {
                precision: None,
                scale: None
            }
        );
        assert_eq!(c.kind(90_001, -1), Kind::Enum);
        assert_eq!(c.kind(4242, -1), Kind::Text);
    }
}
