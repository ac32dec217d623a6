//! Streaming: pgoutput transactions → records, in commit order.

use std::collections::HashMap;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use serde_json::Value;

use super::{SourceConfig, SourceError};
use crate::event::{self, Op, Record, SourceInfo, TxOrder};
use crate::lsn::Lsn;
use crate::pgoutput::{self, Message, Relation, Relations};
use crate::sink::origin_name;

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
    relations: Relations,
    open: Option<Open>,
    last_commit: Option<Lsn>,
    /// Origins of our own sinks: transactions carrying them are dropped.
    our_origin_prefix: String,
}

impl Stream {
    pub(crate) fn new(client: ReplicationClient, cfg: SourceConfig) -> Stream {
        let db = cfg.db();
        Stream {
            client,
            cfg,
            db,
            relations: Relations::default(),
            open: None,
            last_commit: None,
            our_origin_prefix: origin_name(""),
        }
    }

    /// Starts streaming from the slot's confirmed position.
    pub async fn start(cfg: &SourceConfig) -> Result<Stream, SourceError> {
        let client = ReplicationClient::connect(cfg.replication()?)
            .await
            .map_err(|e| SourceError::Replication(e.to_string()))?;
        let mut s = Stream::new(client, cfg.clone());
        s.client
            .wait_started()
            .await
            .map_err(|e| SourceError::Replication(e.to_string()))?;
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
            let ev = self
                .client
                .recv()
                .await
                .map_err(|e| SourceError::Replication(e.to_string()))?;
            let Some(ev) = ev else {
                return Err(SourceError::Replication(
                    "the replication stream ended".into(),
                ));
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
                    let msg = pgoutput::decode(&data)
                        .map_err(|e| SourceError::Replication(e.to_string()))?;
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
                    return Err(SourceError::Replication(
                        "the replication stream stopped".into(),
                    ));
                }
            }
        }
    }

    fn message(&mut self, msg: Message, at: Lsn) -> Result<(), SourceError> {
        if let Message::Relation(r) = msg {
            self.relations.insert(r);
            return Ok(());
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        if let Message::Origin { name } = &msg {
            open.foreign_origin = name.starts_with(&self.our_origin_prefix);
            return Ok(());
        }
        if open.foreign_origin {
            return Ok(());
        }
        let src = |rel: &Relation| -> (String, String) {
            (
                format!("{}.{}.{}", self.cfg.name, rel.schema, rel.table),
                format!("{}.{}", rel.schema, rel.table),
            )
        };
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
        let emit = |open: &mut Open,
                    rel: &Relation,
                    op: Op,
                    key: Option<Value>,
                    before: Option<Value>,
                    after: Option<Value>| {
            let n = open.per_table.entry(rel.oid).or_insert(0);
            *n += 1;
            let order = TxOrder {
                total: open.records.len() as u64 + 1,
                in_table: *n,
            };
            let (topic, table) = src(rel);
            open.records.push(Record {
                topic,
                table,
                key,
                value: Some(event::envelope(
                    op,
                    before,
                    after,
                    rel,
                    &info,
                    Some(order),
                    now,
                )),
                commit_lsn: Lsn(0),
            });
        };
        let tombstone = |open: &mut Open, rel: &Relation, key: Option<Value>| {
            let (topic, table) = src(rel);
            open.records.push(Record {
                topic,
                table,
                key,
                value: None,
                commit_lsn: Lsn(0),
            });
        };
        let rel_of = |oid: u32| {
            self.relations.get(oid).cloned().ok_or_else(|| {
                SourceError::Replication(format!("change for unknown relation {oid}"))
            })
        };
        match msg {
            Message::Insert { rel, new } => {
                let rel = rel_of(rel)?;
                emit(
                    open,
                    &rel,
                    Op::Create,
                    event::key(&rel, &new),
                    None,
                    Some(event::row(&rel, &new)),
                );
            }
            Message::Update { rel, old, new } => {
                let rel = rel_of(rel)?;
                let new_key = event::key(&rel, &new);
                let old_key = old.as_ref().and_then(|o| event::key(&rel, o));
                match old_key {
                    Some(ok) if Some(&ok) != new_key.as_ref() => {
                        // Primary-key change: delete + tombstone + create, as Debezium does.
                        let before = old.as_ref().map(|o| event::row(&rel, o));
                        emit(open, &rel, Op::Delete, Some(ok.clone()), before, None);
                        tombstone(open, &rel, Some(ok));
                        emit(
                            open,
                            &rel,
                            Op::Create,
                            new_key,
                            None,
                            Some(event::row(&rel, &new)),
                        );
                    }
                    _ => {
                        // With REPLICA IDENTITY FULL the old row is sent; otherwise `before` is null.
                        let before = old
                            .as_ref()
                            .filter(|_| rel.replica_identity == b'f')
                            .map(|o| event::row(&rel, o));
                        emit(
                            open,
                            &rel,
                            Op::Update,
                            new_key,
                            before,
                            Some(event::row(&rel, &new)),
                        );
                    }
                }
            }
            Message::Delete { rel, old } => {
                let rel = rel_of(rel)?;
                let key = event::key(&rel, &old);
                emit(
                    open,
                    &rel,
                    Op::Delete,
                    key.clone(),
                    Some(event::row(&rel, &old)),
                    None,
                );
                tombstone(open, &rel, key);
            }
            Message::Truncate { rels, .. } => {
                for oid in rels {
                    let rel = rel_of(oid)?;
                    emit(open, &rel, Op::Truncate, None, None, None);
                }
            }
            Message::Relation(_) | Message::Origin { .. } | Message::Type | Message::Other(_) => {}
        }
        Ok(())
    }
}
