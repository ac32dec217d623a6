//! `[cdc]`: the source, the transport and its representation options,
//! the sinks and their table mappings.

use std::collections::HashSet;

use toml::Spanned;

use super::*;

fn table(c: &mut Checker<'_>, t: &Spanned<String>, key: &str) -> TableName {
    t.get_ref().parse().unwrap_or_else(|msg| {
        c.err(t, key, msg);
        TableName {
            schema: String::new(),
            table: String::new(),
        }
    })
}

pub(super) fn check_cdc(c: &mut Checker<'_>, raw: &RawCdc, base_dir: &Path) -> CdcConfig {
    let s = &raw.source;
    let snapshot = match &s.snapshot {
        Some(v) => match v.get_ref().as_str() {
            "initial" => SnapshotMode::Initial,
            "never" => SnapshotMode::Never,
            other => {
                c.err(
                    v,
                    "cdc.source.snapshot",
                    format!("unknown mode {other:?} (expected initial or never)"),
                );
                SnapshotMode::Initial
            }
        },
        None => SnapshotMode::Initial,
    };
    let ident = |c: &mut Checker<'_>, v: &Option<Spanned<String>>, key: &str| -> String {
        match v {
            Some(n)
                if n.get_ref().is_empty()
                    || !n
                        .get_ref()
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') =>
            {
                c.err(
                    n,
                    key,
                    "use lower-case letters, digits and '_' (PostgreSQL's rule for slot names)",
                );
                "strangler".to_string()
            }
            Some(n) => n.get_ref().clone(),
            None => "strangler".to_string(),
        }
    };
    let slot = ident(c, &s.slot, "cdc.source.slot");
    let kind = match s.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
        None | Some((_, "postgres" | "postgresql")) => {
            if let Some(id) = &s.server_id {
                c.err(
                    id,
                    "cdc.source.server_id",
                    "applies to kind = \"mysql\" only",
                );
            }
            SourceKind::Postgres
        }
        Some((_, "mysql" | "mariadb")) => {
            if let Some(p) = &s.publication {
                c.err(
                    p,
                    "cdc.source.publication",
                    "PostgreSQL only: a MySQL source reads the binlog, which has no publications",
                );
            }
            SourceKind::MySql {
                server_id: match &s.server_id {
                    Some(n) if (1..=i64::from(u32::MAX)).contains(n.get_ref()) => {
                        *n.get_ref() as u32
                    }
                    Some(n) => {
                        c.err(
                            n,
                            "cdc.source.server_id",
                            "a server id from 1 to 4294967295, unique among the server's replicas",
                        );
                        default_server_id(&slot)
                    }
                    None => default_server_id(&slot),
                },
            }
        }
        Some((k, other)) => {
            c.err(
                k,
                "cdc.source.kind",
                format!("unknown source {other:?} (expected postgres or mysql)"),
            );
            SourceKind::Postgres
        }
    };
    let source = CdcSource {
        kind,
        url_env: s.url_env.get_ref().clone(),
        slot,
        publication: ident(c, &s.publication, "cdc.source.publication"),
        tables: s
            .tables
            .iter()
            .map(|t| table(c, t, "cdc.source.tables"))
            .collect(),
        snapshot,
        verify_after_snapshot: match &s.verify_after_snapshot {
            Some(n) => u32::try_from(*n.get_ref()).unwrap_or_else(|_| {
                c.err(
                    n,
                    "cdc.source.verify_after_snapshot",
                    "a number of rows from 0 (off) to 4294967295",
                );
                0
            }),
            None => 1000,
        },
        transaction_memory: match &s.transaction_memory_mb {
            Some(n) if (1..=65_536).contains(n.get_ref()) => (*n.get_ref() as usize) << 20,
            Some(n) => {
                c.err(n, "cdc.source.transaction_memory_mb", "MiB from 1 to 65536");
                64 << 20
            }
            None => 64 << 20,
        },
        snapshot_chunk_rows: match &s.snapshot_chunk_rows {
            Some(n) if (1..=1_000_000).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                c.err(
                    n,
                    "cdc.source.snapshot_chunk_rows",
                    "rows from 1 to 1000000",
                );
                2_000
            }
            None => 2_000,
        },
        snapshot_workers: match &s.snapshot_workers {
            Some(n) if (1..=32).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                c.err(n, "cdc.source.snapshot_workers", "connections from 1 to 32");
                DEFAULT_SNAPSHOT_WORKERS
            }
            None => DEFAULT_SNAPSHOT_WORKERS,
        },
    };
    let t = &raw.transport;
    let format = event_format(c, t);
    if kind.is_mysql() && t.schemas_enable {
        c.err_at(
            s.kind.as_ref().map_or(0, |k| k.span().start),
            "cdc.transport.schemas_enable",
            "not available with kind = \"mysql\" yet: MySQL events are schemaless JSON (Kafka Connect's schemas.enable = false)",
        );
    }
    let topic_prefix = t
        .topic_prefix
        .as_ref()
        .map_or("strangler".to_string(), |p| p.get_ref().clone());
    let transport = match t.kind.as_ref().map(|k| (k, k.get_ref().as_str())) {
        Some((_, "kafka")) => match &t.brokers {
            Some(b) => CdcTransport::Kafka {
                brokers: b.get_ref().clone(),
                topic_prefix,
                properties: kafka_properties(c, t, base_dir),
                consumer_group: consumer_group(c, t, raw.sinks.len()),
                client_id: t.client_id.as_ref().map(|v| v.get_ref().clone()),
            },
            None => {
                c.err_at(
                    t.kind.as_ref().map_or(0, |k| k.span().start),
                    "cdc.transport.brokers",
                    "kind = \"kafka\" needs brokers",
                );
                CdcTransport::Embedded { topic_prefix }
            }
        },
        Some((_, "embedded")) | None => CdcTransport::Embedded { topic_prefix },
        Some((k, other)) => {
            c.err(
                k,
                "cdc.transport.kind",
                format!("unknown transport {other:?} (expected kafka or embedded)"),
            );
            CdcTransport::Embedded { topic_prefix }
        }
    };
    let mut names = HashSet::new();
    let sinks = raw
        .sinks
        .iter()
        .enumerate()
        .map(|(i, sink)| {
            if !names.insert(sink.name.get_ref().clone()) {
                c.err(
                    &sink.name,
                    &format!("cdc.sinks[{i}].name"),
                    "sink names are unique",
                );
            }
            let connections = match &sink.connections {
                Some(n) if matches!(transport, CdcTransport::Kafka { .. }) && *n.get_ref() != 1 => {
                    c.err(
                        n,
                        &format!("cdc.sinks[{i}].connections"),
                        "applies to the embedded transport; with Kafka, run several sink workers (cdc run --sinks-only)",
                    );
                    1
                }
                Some(n) if (1..=16).contains(n.get_ref()) => *n.get_ref() as usize,
                Some(n) => {
                    c.err(
                        n,
                        &format!("cdc.sinks[{i}].connections"),
                        "connections from 1 to 16",
                    );
                    1
                }
                None => 1,
            };
            CdcSink {
                name: sink.name.get_ref().clone(),
                url_env: sink.url_env.get_ref().clone(),
                reverse: sink.reverse,
                connections,
                tables: sink
                    .tables
                    .iter()
                    .enumerate()
                    .map(|(j, m)| {
                        let key = format!("cdc.sinks[{i}].tables[{j}]");
                        let source_t = table(c, &m.source, &format!("{key}.source"));
                        if !sink.reverse && !source.tables.contains(&source_t) {
                            c.err(
                                &m.source,
                                &format!("{key}.source"),
                                format!("{} is not among cdc.source.tables", m.source.get_ref()),
                            );
                        }
                        let target = match &m.target {
                            Some(t) => table(c, t, &format!("{key}.target")),
                            None => source_t.clone(),
                        };
                        TableMapping {
                            source: source_t,
                            target,
                            rename: m.rename.clone(),
                            exclude: m.exclude.clone(),
                            drop_columns: m.drop_columns,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    let outbox = check_outbox(c, raw, &source, &transport);
    CdcConfig {
        source,
        transport,
        format,
        sinks,
        outbox,
    }
}

/// `[[cdc.outbox]]`: captured tables, Kafka transport.
fn check_outbox(
    c: &mut Checker<'_>,
    raw: &RawCdc,
    source: &CdcSource,
    transport: &CdcTransport,
) -> Vec<crate::validated::Outbox> {
    let mut out = Vec::new();
    for o in &raw.outbox {
        let table = table(c, &o.table, "cdc.outbox.table");
        if !source.tables.contains(&table) {
            c.err(
                &o.table,
                "cdc.outbox.table",
                format!("{table} is not captured: add it to cdc.source.tables"),
            );
        }
        if !matches!(transport, CdcTransport::Kafka { .. }) {
            c.err(
                &o.table,
                "cdc.outbox",
                "outbox events travel through Kafka: set [cdc.transport] kind = \"kafka\"",
            );
        }
        let col = |v: &Option<Spanned<String>>, default: &str| {
            v.as_ref()
                .map_or(default.to_string(), |s| s.get_ref().clone())
        };
        out.push(crate::validated::Outbox {
            table,
            id: col(&o.id, "id"),
            aggregate_type: col(&o.aggregate_type, "aggregatetype"),
            aggregate_id: col(&o.aggregate_id, "aggregateid"),
            event_type: col(&o.event_type, "type"),
            payload: col(&o.payload, "payload"),
        });
    }
    out
}

/// Debezium's representation options of `[cdc.transport]`.
fn event_format(c: &mut Checker<'_>, t: &RawCdcTransport) -> EventFormat {
    fn pick<T: Copy + Default>(
        c: &mut Checker<'_>,
        v: &Option<Spanned<String>>,
        key: &str,
        choices: &[(&str, T)],
    ) -> T {
        let Some(v) = v else { return T::default() };
        match choices
            .iter()
            .find(|(name, _)| *name == v.get_ref().as_str())
        {
            Some((_, x)) => *x,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                c.err(
                    v,
                    key,
                    format!(
                        "unknown mode {:?} (expected {})",
                        v.get_ref(),
                        names.join(" | ")
                    ),
                );
                T::default()
            }
        }
    }
    EventFormat {
        decimal: pick(
            c,
            &t.decimal_handling,
            "cdc.transport.decimal_handling",
            &[
                ("precise", DecimalHandling::Precise),
                ("string", DecimalHandling::String),
                ("double", DecimalHandling::Double),
            ],
        ),
        time: pick(
            c,
            &t.time_precision,
            "cdc.transport.time_precision",
            &[
                ("adaptive", TimePrecision::Adaptive),
                ("connect", TimePrecision::Connect),
            ],
        ),
        interval: pick(
            c,
            &t.interval_handling,
            "cdc.transport.interval_handling",
            &[
                ("numeric", IntervalHandling::Numeric),
                ("string", IntervalHandling::String),
            ],
        ),
        binary: pick(
            c,
            &t.binary_handling,
            "cdc.transport.binary_handling",
            &[
                ("bytes", BinaryHandling::Bytes),
                ("base64", BinaryHandling::Base64),
                ("hex", BinaryHandling::Hex),
            ],
        ),
        schemas: t.schemas_enable,
    }
}

/// `[cdc.transport.properties]`: names checked, `.env`/`.file` split off.
fn kafka_properties(
    c: &mut Checker<'_>,
    t: &RawCdcTransport,
    base_dir: &Path,
) -> Vec<KafkaProperty> {
    let mut out = Vec::new();
    for (key, value) in &t.properties {
        let at = format!("cdc.transport.properties.{key:?}");
        let (name, source) = if let Some(name) = key.strip_suffix(".env") {
            (name, PropertySource::Env(value.get_ref().clone()))
        } else if let Some(name) = key.strip_suffix(".file") {
            (name, PropertySource::File(base_dir.join(value.get_ref())))
        } else {
            (key.as_str(), PropertySource::Value(value.get_ref().clone()))
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            c.err(
                value,
                &at,
                format!("{key:?} is not a librdkafka property name"),
            );
            continue;
        }
        if RESERVED_KAFKA_PROPERTIES.contains(&name) {
            let instead = match name {
                "bootstrap.servers" => "set cdc.transport.brokers",
                "group.id" => "set cdc.transport.consumer_group",
                "client.id" => "set cdc.transport.client_id",
                _ => "strangler's delivery guarantees rest on it",
            };
            c.err(value, &at, format!("{name} cannot be set here: {instead}"));
            continue;
        }
        if matches!(&source, PropertySource::Env(v) if v.is_empty()) {
            c.err(
                value,
                &at,
                "names an environment variable and cannot be empty",
            );
            continue;
        }
        out.push(KafkaProperty {
            name: name.to_string(),
            source,
        });
    }
    out
}

/// `cdc.transport.consumer_group`: one group per sink, so with several
/// sinks the name must hold `{sink}`.
fn consumer_group(c: &mut Checker<'_>, t: &RawCdcTransport, sinks: usize) -> String {
    match &t.consumer_group {
        Some(g) if g.get_ref().is_empty() => {
            c.err(g, "cdc.transport.consumer_group", "cannot be empty");
            DEFAULT_CONSUMER_GROUP.to_string()
        }
        Some(g) if sinks > 1 && !g.get_ref().contains("{sink}") => {
            c.err(
                g,
                "cdc.transport.consumer_group",
                format!("{:?} would be shared by the {sinks} sinks: include {{sink}} (e.g. \"prod-{{sink}}\")", g.get_ref()),
            );
            DEFAULT_CONSUMER_GROUP.to_string()
        }
        Some(g) => g.get_ref().clone(),
        None => DEFAULT_CONSUMER_GROUP.to_string(),
    }
}
