//! Streaming: pgoutput transactions → records, in commit order.

use std::collections::HashMap;
use std::sync::Arc;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use serde_json::{Map, Value};

use super::{SourceConfig, SourceError};
use crate::event::{self, Op, Record, SourceInfo, Table, TxOrder};
use crate::lsn::Lsn;
use crate::pgoutput::{self, Message, Value as Col};
use crate::types::Catalog;

/// PostgreSQL's epoch (2000-01-01) in ms since the Unix epoch.
const PG_EPOCH_MS: i64 = 946_684_800_000;

/// A committed source transaction.
#[derive(Debug, Clone)]
pub struct Tx {
    pub xid: u32,
    /// The position after its commit record: confirming it means "done".
    pub end_lsn: Lsn,
    pub records: Vec<Record>,
}

/// What the stream yields.
#[derive(Debug)]
pub enum Item {
    Tx(Tx),
    /// A transaction written by one of our sinks (reverse sync): nothing to
    /// publish, but its position may be confirmed.
    Skipped(Lsn),
    /// No transaction in flight and the server is at this position: it may
    /// be confirmed once everything before it is (the heartbeat that keeps
    /// an idle slot from holding WAL).
    Idle(Lsn),
}

struct Open {
    xid: u32,
    commit_ms: i64,
    foreign_origin: bool,
    records: Vec<Record>,
    per_table: HashMap<u32, u64>,
}

/// A running replication stream.
pub struct Stream {
    client: ReplicationClient,
    cfg: SourceConfig,
    db: String,
    /// Relations seen so far (pgoutput sends each before first use and
    /// again after it changes), with their columns' kinds.
    tables: HashMap<u32, Arc<Table>>,
    catalog: Catalog,
    open: Option<Open>,
    last_commit: Option<Lsn>,
}

impl Stream {
    pub(crate) fn new(client: ReplicationClient, cfg: SourceConfig, catalog: Catalog) -> Stream {
        let db = cfg.db();
        Stream {
            client,
            cfg,
            db,
            tables: HashMap::new(),
            catalog,
            open: None,
            last_commit: None,
        }
    }

    /// Starts streaming from the slot's confirmed position.
    pub async fn start(cfg: &SourceConfig) -> Result<Stream, SourceError> {
        let catalog = Catalog::load(&mut super::connect(cfg).await?).await?;
        let client = ReplicationClient::connect(cfg.replication()?).await?;
        let mut s = Stream::new(client, cfg.clone(), catalog);
        s.client.wait_started().await?;
        Ok(s)
    }

    /// Everything up to `lsn` is durably taken: the slot may move there.
    pub fn confirm(&self, lsn: Lsn) {
        self.client
            .update_applied_lsn(pgwire_replication::Lsn(lsn.0));
    }

    /// Stops the session after the last confirmation has gone out (the
    /// client sends standby status at most every status interval, 500 ms).
    pub async fn shutdown(mut self) {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let _ = self.client.shutdown().await;
    }

    /// The next committed transaction, skipped transaction, or idle point.
    pub async fn next(&mut self) -> Result<Item, SourceError> {
        loop {
            let Some(ev) = self.client.recv().await? else {
                return Err(SourceError::Ended("the replication stream ended"));
            };
            match ev {
                ReplicationEvent::Begin {
                    xid,
                    commit_time_micros,
                    ..
                } => {
                    self.open = Some(Open {
                        xid,
                        commit_ms: PG_EPOCH_MS + commit_time_micros / 1000,
                        foreign_origin: false,
                        records: Vec::new(),
                        per_table: HashMap::new(),
                    });
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let msg = pgoutput::decode(&data)?;
                    if let Message::Relation(rel) = msg {
                        // A type created after the catalog was read (a new
                        // enum, domain or array of one): read it again.
                        if rel.columns.iter().any(|c| !self.catalog.knows(c.type_oid)) {
                            self.catalog =
                                Catalog::load(&mut super::connect(&self.cfg).await?).await?;
                        }
                        let table = Table::new(rel, &self.catalog, &self.cfg.name, self.cfg.format);
                        self.tables.insert(table.rel.oid, Arc::new(table));
                        continue;
                    }
                    self.message(msg, Lsn(wal_start.0))?;
                }
                ReplicationEvent::Commit { end_lsn, lsn, .. } => {
                    let end = Lsn(end_lsn.0);
                    let Some(open) = self.open.take() else {
                        continue;
                    };
                    self.last_commit = Some(Lsn(lsn.0));
                    if open.foreign_origin {
                        return Ok(Item::Skipped(end));
                    }
                    let mut records = open.records;
                    for r in &mut records {
                        r.commit_lsn = end;
                    }
                    return Ok(Item::Tx(Tx {
                        xid: open.xid,
                        end_lsn: end,
                        records,
                    }));
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if self.open.is_none() {
                        return Ok(Item::Idle(Lsn(wal_end.0)));
                    }
                }
                ReplicationEvent::Message { .. } => {}
                ReplicationEvent::StoppedAt { .. } => {
                    return Err(SourceError::Ended("the replication stream stopped"));
                }
            }
        }
    }

    fn message(&mut self, msg: Message, at: Lsn) -> Result<(), SourceError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if let Message::Origin { name } = &msg {
            open.foreign_origin = crate::origin::is_ours(name);
            return Ok(());
        }
        if open.foreign_origin {
            return Ok(());
        }
        let info = SourceInfo {
            name: &self.cfg.name,
            db: &self.db,
            tx_id: Some(open.xid),
            lsn: Some(at),
            last_commit_lsn: self.last_commit,
            ts_ms: open.commit_ms,
            snapshot: "false",
        };
        let now = crate::now_ms();
        // `exact` is the text of the lossy columns of the row the sink
        // writes (the new row, or the key of a delete).
        let emit = |open: &mut Open,
                    t: &Table,
                    op: Op,
                    key: Option<Value>,
                    before: Option<Value>,
                    after: Option<Value>,
                    exact: Map<String, Value>| {
            let n = open.per_table.entry(t.rel.oid).or_insert(0);
            *n += 1;
            let order = TxOrder {
                total: open.records.len() as u64 + 1,
                in_table: *n,
            };
            let seq = open.records.len() as u32;
            open.records.push(Record {
                topic: t.topic.clone(),
                table: t.name.clone(),
                key,
                seq,
                value: Some(event::envelope(
                    op,
                    before,
                    after,
                    &t.rel,
                    &info,
                    Some(order),
                    now,
                )),
                commit_lsn: Lsn(0),
                exact: (!exact.is_empty()).then_some(exact),
                schemas: t.schemas.clone(),
            });
        };
        let tombstone = |open: &mut Open, t: &Table, key: Option<Value>| {
            let seq = open.records.len() as u32;
            open.records.push(Record {
                topic: t.topic.clone(),
                table: t.name.clone(),
                key,
                seq,
                value: None,
                commit_lsn: Lsn(0),
                exact: None,
                schemas: t.schemas.clone(),
            });
        };
        let table_of = |oid: u32| {
            self.tables.get(&oid).cloned().ok_or_else(|| {
                SourceError::Invalid(format!(
                    "pgoutput: a change for relation {oid}, which was never described"
                ))
            })
        };
        // The new row with its exact texts.
        let after = |t: &Table, vals: &[Col]| {
            let mut exact = Map::new();
            let row = t.row(vals, Some(&mut exact));
            (row, exact)
        };
        let key_exact = |t: &Table, vals: &[Col]| {
            let mut exact = Map::new();
            let key = t.key(vals, Some(&mut exact));
            (key, exact)
        };
        match msg {
            Message::Insert { rel, new } => {
                let t = table_of(rel)?;
                let (row, exact) = after(&t, &new);
                emit(
                    open,
                    &t,
                    Op::Create,
                    t.key(&new, None),
                    None,
                    Some(row),
                    exact,
                );
            }
            Message::Update { rel, old, new } => {
                let t = table_of(rel)?;
                let new_key = t.key(&new, None);
                let old_key = old.as_ref().and_then(|o| t.key(o, None));
                match old_key {
                    Some(ok) if Some(&ok) != new_key.as_ref() => {
                        // Primary-key change: delete + tombstone + create, as Debezium does.
                        let before = old.as_ref().map(|o| t.row(o, None));
                        let (_, old_exact) = key_exact(&t, old.as_deref().unwrap_or_default());
                        emit(
                            open,
                            &t,
                            Op::Delete,
                            Some(ok.clone()),
                            before,
                            None,
                            old_exact,
                        );
                        tombstone(open, &t, Some(ok));
                        let (row, exact) = after(&t, &new);
                        emit(open, &t, Op::Create, new_key, None, Some(row), exact);
                    }
                    _ => {
                        // With REPLICA IDENTITY FULL the old row is sent; otherwise `before` is null.
                        let before = old
                            .as_ref()
                            .filter(|_| t.rel.replica_identity == b'f')
                            .map(|o| t.row(o, None));
                        let (row, exact) = after(&t, &new);
                        emit(open, &t, Op::Update, new_key, before, Some(row), exact);
                    }
                }
            }
            Message::Delete { rel, old } => {
                let t = table_of(rel)?;
                let (key, exact) = key_exact(&t, &old);
                emit(
                    open,
                    &t,
                    Op::Delete,
                    key.clone(),
                    Some(t.row(&old, None)),
                    None,
                    exact,
                );
                tombstone(open, &t, key);
            }
            Message::Truncate { rels, .. } => {
                for oid in rels {
                    let t = table_of(oid)?;
                    emit(open, &t, Op::Truncate, None, None, None, Map::new());
                }
            }
            Message::Relation(_) | Message::Origin { .. } | Message::Type | Message::Other(_) => {}
        }
        Ok(())
    }
}
