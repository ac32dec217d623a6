//! A target table: its columns, types and primary key, and the statement
//! an event becomes.

use std::collections::BTreeMap;

use sqlx::{PgConnection, Row};
use strangler_config::TableMapping;

use super::mapping::{self, Mapped};
use crate::event::Record;
use crate::types::{Catalog, EventFormat, Kind};

/// A column of the target table.
#[derive(Debug, Clone)]
pub struct TargetColumn {
    pub name: String,
    /// `format_type` of the column (`bigint`, `timestamp with time zone`, …).
    pub type_name: String,
    /// How event values are read back for it.
    pub kind: Kind,
}

/// A target table with the mapping from its source.
#[derive(Debug, Clone)]
pub struct TargetTable {
    /// `"schema"."table"`, quoted.
    pub qualified: String,
    pub columns: BTreeMap<String, TargetColumn>,
    pub primary_key: Vec<String>,
    pub mapping: TableMapping,
    /// The representation of the events read.
    pub format: EventFormat,
}

pub enum LoadError {
    Db(sqlx::Error),
    Schema(String),
}

impl From<sqlx::Error> for LoadError {
    fn from(e: sqlx::Error) -> Self {
        LoadError::Db(e)
    }
}

pub fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl TargetTable {
    pub async fn load(
        conn: &mut PgConnection,
        m: &TableMapping,
        catalog: &Catalog,
        format: EventFormat,
    ) -> Result<TargetTable, LoadError> {
        let rows = sqlx::query(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid::int8, a.atttypmod \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        )
        .bind(&m.target.schema)
        .bind(&m.target.table)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            return Err(LoadError::Schema(format!(
                "target table {} does not exist",
                m.target
            )));
        }
        let mut columns = BTreeMap::new();
        for r in &rows {
            let name: String = r.try_get(0)?;
            columns.insert(
                name.clone(),
                TargetColumn {
                    name,
                    type_name: r.try_get(1)?,
                    kind: catalog.kind(
                        u32::try_from(r.try_get::<i64, _>(2)?).unwrap_or(0),
                        r.try_get(3)?,
                    ),
                },
            );
        }
        let pk: Vec<String> = sqlx::query(
            "SELECT a.attname FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE i.indisprimary AND n.nspname = $1 AND c.relname = $2 ORDER BY array_position(i.indkey, a.attnum)",
        )
        .bind(&m.target.schema)
        .bind(&m.target.table)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
        if pk.is_empty() {
            return Err(LoadError::Schema(format!(
                "target table {} has no primary key to upsert on",
                m.target
            )));
        }
        for (src, dst) in &m.rename {
            if !columns.contains_key(dst) {
                return Err(LoadError::Schema(format!(
                    "mapping of {}: {src} → {dst}, but {} has no column {dst}",
                    m.source, m.target
                )));
            }
        }
        Ok(TargetTable {
            qualified: format!("{}.{}", quote(&m.target.schema), quote(&m.target.table)),
            columns,
            primary_key: pk,
            mapping: m.clone(),
            format,
        })
    }

    /// Loads the shape for `strangler cdc verify` (errors as sqlx errors).
    pub async fn load_for_verify(
        conn: &mut PgConnection,
        m: &TableMapping,
    ) -> Result<TargetTable, sqlx::Error> {
        let catalog = Catalog::load(&mut *conn).await?;
        match TargetTable::load(conn, m, &catalog, EventFormat::default()).await {
            Ok(t) => Ok(t),
            Err(LoadError::Db(e)) => Err(e),
            Err(LoadError::Schema(msg)) => Err(sqlx::Error::Protocol(msg)),
        }
    }

    /// The statement for one record (`None` for tombstones), or why a
    /// value cannot be read.
    pub fn statement(&self, r: &Record) -> Result<Option<Mapped>, String> {
        mapping::statement(self, r)
    }
}
