//! Streaming: pgoutput transactions → records, in commit order.
//!
//! A transaction's messages are kept as pgoutput sent them until its
//! commit ([`super::spill`]: in memory up to `tx_memory`, then in a
//! temporary file), and decoded into records only then: a small one as a
//! whole ([`Item::Tx`]), a large one part by part ([`Item::Large`],
//! [`Stream::part`]), so memory stays bounded whatever its size.

use std::collections::HashMap;
use std::sync::Arc;

use pgwire_replication::{ReplicationClient, ReplicationEvent};
use serde_json::{Map, Value};

use super::spill::{Messages, Pending};
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

/// Records per part of a large transaction (and the most messages a
/// transaction may have to be decoded whole).
pub const PART: usize = 5_000;

/// A committed transaction too large to be decoded whole: its records are
/// read part by part with [`Stream::part`].
pub struct Large {
    pub xid: u32,
    /// The position after its commit record.
    pub end_lsn: Lsn,
    messages: Messages,
    decoding: Decoding,
}

impl std::fmt::Debug for Large {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Large")
            .field("xid", &self.xid)
            .field("end_lsn", &self.end_lsn)
            .finish_non_exhaustive()
    }
}

/// What the stream yields.
#[derive(Debug)]
pub enum Item {
    Tx(Tx),
    /// A transaction of more than [`PART`] messages.
    Large(Large),
    /// A transaction written by one of our sinks (reverse sync): nothing to
    /// publish, but its position may be confirmed.
    Skipped(Lsn),
    /// No transaction in flight and the server is at this position: it may
    /// be confirmed once everything before it is (the heartbeat that keeps
    /// an idle slot from holding WAL).
    Idle(Lsn),
    /// A committed request to copy `table` in chunks while streaming
    /// (`strangler cdc snapshot --table`); `end_lsn` may be confirmed like
    /// an idle position once everything before it is.
    SnapshotRequest {
        table: String,
        end_lsn: Lsn,
    },
    /// A chunk's watermark (`high`: the chunk was read) at `lsn`.
    Watermark {
        high: bool,
        chunk: String,
        lsn: Lsn,
    },
}

/// The transaction being read.
struct Open {
    xid: u32,
    commit_ms: i64,
    foreign_origin: bool,
    pending: Pending,
    /// Tables requested for a chunked snapshot in this transaction.
    requests: Vec<String>,
    /// Relations described in this transaction (read again at commit, in
    /// order, with the changes).
    relations: Vec<pgoutput::Relation>,
}

/// A committed transaction whose relations are being described before it
/// is decoded: kept here, so that a `next` dropped meanwhile (a timeout)
/// loses nothing — the next call goes on with it.
struct Committing {
    open: Open,
    end: Lsn,
    last_commit: Option<Lsn>,
}

/// Turning a committed transaction's messages into records.
struct Decoding {
    xid: u32,
    commit_ms: i64,
    end_lsn: Lsn,
    /// The commit before this transaction's (`source.lsn` of Debezium's
    /// `last_commit_lsn`).
    last_commit: Option<Lsn>,
    /// Records emitted so far (the next `seq`).
    emitted: u64,
    per_table: HashMap<u32, u64>,
    records: Vec<Record>,
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
    /// Items due before the next message is read.
    queued: std::collections::VecDeque<Item>,
    /// Tables whose description is still to be announced as a
    /// schema-change record (`shape.rs`) before their next change: the
    /// first in this session, and each changed one.
    unannounced: std::collections::HashSet<u32>,
    /// A regular session for reading the catalog (opened on first need).
    meta: Option<sqlx::PgConnection>,
    /// The columns of the relations described lately (`shape.rs`), for
    /// their schema-change records: by the whole description (a table may
    /// change twice in one transaction), the newest last, a few hundred.
    described: Vec<(pgoutput::Relation, Vec<Value>)>,
    committing: Option<Committing>,
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
            queued: std::collections::VecDeque::new(),
            unannounced: std::collections::HashSet::new(),
            meta: None,
            described: Vec::new(),
            committing: None,
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
        if let Some(item) = self.queued.pop_front() {
            return Ok(item);
        }
        if self.committing.is_some() {
            return self.commit().await;
        }
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
                        pending: Pending::new(self.cfg.tx_memory),
                        requests: Vec::new(),
                        relations: Vec::new(),
                    });
                }
                ReplicationEvent::XLogData {
                    wal_start, data, ..
                } => {
                    let at = Lsn(wal_start.0);
                    match self.open.as_mut() {
                        // The origin comes first: a transaction of ours is
                        // not even kept.
                        Some(open) if data.first() == Some(&b'O') => {
                            if let Message::Origin { name } = pgoutput::decode(&data)? {
                                open.foreign_origin = crate::origin::is_ours(&name);
                            }
                        }
                        // A transaction of ours is skipped, but the tables it
                        // describes are described for what follows.
                        Some(open) if open.foreign_origin => {
                            if data.first() == Some(&b'R') {
                                if let Message::Relation(rel) = pgoutput::decode(&data)? {
                                    open.relations.push(rel);
                                }
                            }
                        }
                        Some(open) => {
                            if data.first() == Some(&b'R') {
                                if let Message::Relation(rel) = pgoutput::decode(&data)? {
                                    open.relations.push(rel);
                                }
                            }
                            open.pending.push(at, data).map_err(spill_error)?
                        }
                        None => {
                            if let Message::Relation(rel) = pgoutput::decode(&data)? {
                                self.prepare(std::slice::from_ref(&rel)).await?;
                            }
                            let mut nothing = Decoding::new(0, 0, Lsn(0), None);
                            self.decode(&mut nothing, at, &data)?;
                        }
                    }
                }
                ReplicationEvent::Commit { end_lsn, lsn, .. } => {
                    let end = Lsn(end_lsn.0);
                    let Some(open) = self.open.take() else {
                        continue;
                    };
                    let last_commit = self.last_commit.replace(Lsn(lsn.0));
                    if open.foreign_origin && open.relations.is_empty() {
                        return Ok(Item::Skipped(end));
                    }
                    self.committing = Some(Committing {
                        open,
                        end,
                        last_commit,
                    });
                    return self.commit().await;
                }
                ReplicationEvent::KeepAlive { wal_end, .. } => {
                    if self.open.is_none() {
                        return Ok(Item::Idle(Lsn(wal_end.0)));
                    }
                }
                ReplicationEvent::Message {
                    transactional,
                    lsn,
                    prefix,
                    content,
                } => {
                    use super::chunk::{parse_watermark, REQUEST_PREFIX, WATERMARK_PREFIX};
                    if prefix == WATERMARK_PREFIX && !transactional {
                        if let Some((high, slot, chunk)) = parse_watermark(&content) {
                            if slot == self.cfg.slot {
                                return Ok(Item::Watermark {
                                    high,
                                    chunk,
                                    lsn: Lsn(lsn.0),
                                });
                            }
                        }
                    } else if prefix == REQUEST_PREFIX && transactional {
                        let request: Option<Value> = serde_json::from_slice(&content).ok();
                        let field = |k: &str| {
                            request
                                .as_ref()
                                .and_then(|r| r.get(k))
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        };
                        if let (Some(open), Some(table)) = (self.open.as_mut(), field("table")) {
                            if field("slot").as_deref() == Some(self.cfg.slot.as_str()) {
                                open.requests.push(table);
                            }
                        }
                    }
                }
                ReplicationEvent::StoppedAt { .. } => {
                    return Err(SourceError::Ended("the replication stream stopped"));
                }
            }
        }
    }

    /// Decodes the committed transaction kept in `committing`, its
    /// relations described first (the only wait: dropped there, the next
    /// call starts here again).
    async fn commit(&mut self) -> Result<Item, SourceError> {
        let relations = match self.committing.as_ref() {
            Some(c) => c.open.relations.clone(),
            None => return Err(SourceError::Invalid("no transaction to commit".into())),
        };
        self.prepare(&relations).await?;
        let Some(Committing {
            open,
            end,
            last_commit,
        }) = self.committing.take()
        else {
            return Err(SourceError::Invalid("no transaction to commit".into()));
        };
        if open.foreign_origin {
            for rel in open.relations {
                self.remember(rel);
            }
            return Ok(Item::Skipped(end));
        }
        for table in open.requests {
            self.queued.push_back(Item::SnapshotRequest {
                table,
                end_lsn: end,
            });
        }
        let decoding = Decoding::new(open.xid, open.commit_ms, end, last_commit);
        let whole = !open.pending.spilled() && open.pending.len() <= PART as u64;
        let mut large = Large {
            xid: open.xid,
            end_lsn: end,
            messages: open.pending.into_messages().map_err(spill_error)?,
            decoding,
        };
        if !whole {
            return Ok(Item::Large(large));
        }
        let mut records = Vec::new();
        while let Some(part) = self.part(&mut large).await? {
            records.extend(part);
        }
        Ok(Item::Tx(Tx {
            xid: open.xid,
            end_lsn: end,
            records,
        }))
    }

    /// Reads what decoding `relations` needs from the catalog: types
    /// created since it was read (a new enum, domain or array of one), and
    /// each relation's columns for its schema-change record. Safe to
    /// repeat.
    async fn prepare(&mut self, relations: &[pgoutput::Relation]) -> Result<(), SourceError> {
        if relations
            .iter()
            .any(|r| r.columns.iter().any(|c| !self.catalog.knows(c.type_oid)))
        {
            self.catalog = Catalog::load(&mut super::connect(&self.cfg).await?).await?;
        }
        for rel in relations {
            if self.described.iter().any(|(r, _)| r == rel) {
                continue;
            }
            if self.meta.is_none() {
                self.meta = Some(super::connect(&self.cfg).await?);
            }
            let conn = self.meta.as_mut().expect("opened above");
            match super::shape::columns(conn, rel).await {
                Ok(columns) => {
                    if self.described.len() >= 256 {
                        self.described.remove(0);
                    }
                    self.described.push((rel.clone(), columns));
                }
                Err(e) => {
                    self.meta = None;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// The next records of a committed transaction, at least [`PART`]
    /// unless it ends first; `None` after the last.
    pub async fn part(&mut self, large: &mut Large) -> Result<Option<Vec<Record>>, SourceError> {
        while large.decoding.records.len() < PART {
            let Some((at, data)) = large.messages.next_message().map_err(spill_error)? else {
                break;
            };
            self.decode(&mut large.decoding, at, &data)?;
        }
        let records = std::mem::take(&mut large.decoding.records);
        Ok((!records.is_empty()).then_some(records))
    }

    /// Decodes one kept message: a relation is remembered, a change
    /// becomes records.
    /// Never waits: what it needs from the catalog was read before
    /// ([`Stream::prepare`]).
    fn decode(&mut self, d: &mut Decoding, at: Lsn, data: &[u8]) -> Result<(), SourceError> {
        let msg = pgoutput::decode(data)?;
        if let Message::Relation(rel) = msg {
            self.remember(rel);
            return Ok(());
        }
        if d.end_lsn.0 == 0 {
            // Outside a transaction: nothing but relations matter.
            return Ok(());
        }
        if let Message::Insert { rel, .. }
        | Message::Update { rel, .. }
        | Message::Delete { rel, .. } = &msg
        {
            if self.unannounced.remove(rel) {
                self.announce(d, *rel);
            }
        }
        self.message(msg, at, d)
    }

    /// Keeps a table's description; a new or changed one is announced
    /// before the table's next change.
    fn remember(&mut self, rel: pgoutput::Relation) {
        if self
            .tables
            .get(&rel.oid)
            .is_none_or(|known| super::shape::differs(&known.rel, &rel))
        {
            self.unannounced.insert(rel.oid);
        }
        let table = Table::new(rel, &self.catalog, &self.cfg.name, self.cfg.format);
        self.tables.insert(table.rel.oid, Arc::new(table));
    }

    /// Places the schema-change record of relation `oid` in the
    /// transaction, before its change.
    fn announce(&mut self, d: &mut Decoding, oid: u32) {
        let Some(t) = self.tables.get(&oid) else {
            return;
        };
        let Some(columns) = self
            .described
            .iter()
            .rev()
            .find(|(r, _)| *r == t.rel)
            .map(|(_, c)| c.clone())
        else {
            tracing::warn!(table = %t.name, "a relation was not described before its change: no schema-change record");
            return;
        };
        let at = super::shape::At {
            prefix: &self.cfg.name,
            db: &self.db,
            commit_lsn: d.end_lsn,
            seq: d.emitted as u32,
            ts_ms: d.commit_ms,
        };
        // Its seq is the next change's: the record is on a topic of its
        // own, and the transaction's `total_order` stays Debezium's.
        d.records.push(super::shape::record(&t.rel, columns, &at));
    }

    fn message(&mut self, msg: Message, at: Lsn, open: &mut Decoding) -> Result<(), SourceError> {
        let info = SourceInfo {
            name: &self.cfg.name,
            db: &self.db,
            tx_id: Some(open.xid),
            lsn: Some(at),
            last_commit_lsn: open.last_commit,
            ts_ms: open.commit_ms,
            snapshot: "false",
        };
        let now = crate::now_ms();
        // `exact` is the text of the lossy columns of the row the sink
        // writes (the new row, or the key of a delete).
        let emit = |open: &mut Decoding,
                    t: &Table,
                    op: Op,
                    key: Option<Value>,
                    before: Option<Value>,
                    after: Option<Value>,
                    exact: Map<String, Value>| {
            let n = open.per_table.entry(t.rel.oid).or_insert(0);
            *n += 1;
            let order = TxOrder {
                total: open.emitted + 1,
                in_table: *n,
            };
            let seq = open.emitted as u32;
            open.emitted += 1;
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
                commit_lsn: open.end_lsn,
                exact: (!exact.is_empty()).then_some(exact),
                schemas: t.schemas.clone(),
                shape: None,
            });
        };
        let tombstone = |open: &mut Decoding, t: &Table, key: Option<Value>| {
            let seq = open.emitted as u32;
            open.emitted += 1;
            open.records.push(Record {
                topic: t.topic.clone(),
                table: t.name.clone(),
                key,
                seq,
                value: None,
                commit_lsn: open.end_lsn,
                exact: None,
                schemas: t.schemas.clone(),
                shape: None,
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

impl Decoding {
    fn new(xid: u32, commit_ms: i64, end_lsn: Lsn, last_commit: Option<Lsn>) -> Decoding {
        Decoding {
            xid,
            commit_ms,
            end_lsn,
            last_commit,
            emitted: 0,
            per_table: HashMap::new(),
            records: Vec::new(),
        }
    }
}

/// The temporary file of a large transaction failed.
fn spill_error(e: std::io::Error) -> SourceError {
    SourceError::Invalid(format!(
        "cannot keep a large transaction in a temporary file (cdc.source.transaction_memory_mb; TMPDIR): {e}"
    ))
}
