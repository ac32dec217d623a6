//! How strangler's Kafka clients connect: the brokers, the consumer group
//! and client id, and the librdkafka properties of `[cdc.transport.properties]`
//! (TLS, SASL, anything a managed Kafka asks for), with secrets read from
//! environment variables (`….env`) or files (`….file`) when the process
//! starts, never written in the file.

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;
use strangler_config::{CdcTransport, KafkaProperty};

/// What the brokers said when they refused this process's credentials or
/// rights (SASL authentication, ACLs), shared by every client made from
/// one [`KafkaClient`]. librdkafka reports a refusal only to the client's
/// error callback; requests then fail as "broker transport failure" or
/// time out, which alone would read as a broker that is down.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<Option<(std::time::Instant, String)>>>);

/// How long a refusal explains the failures that follow it: credentials
/// fixed meanwhile (a rotation, a user still being created) must not make
/// a later outage fatal.
const REFUSAL_EXPLAINS: std::time::Duration = std::time::Duration::from_secs(60);

impl Refusals {
    /// The last refusal, if it is recent.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < REFUSAL_EXPLAINS)
            .map(|(_, reason)| reason.clone())
    }
}

/// Not part of the settings: two clients with the same settings are equal.
impl PartialEq for Refusals {
    fn eq(&self, _: &Refusals) -> bool {
        true
    }
}
impl Eq for Refusals {}

/// The context of every strangler Kafka client: logs librdkafka's errors
/// as the default does, and keeps refusals ([`Refusals`]).
#[derive(Clone, Default)]
pub struct Watch {
    pub(super) refusals: Refusals,
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        watch_error(&self.refusals, &error, reason);
    }
}

/// What [`Watch`] does with an error (shared with the consumer's context).
pub(super) fn watch_error(refusals: &Refusals, error: &KafkaError, reason: &str) {
    use RDKafkaErrorCode as C;
    let refused = matches!(
        error.rdkafka_error_code(),
        Some(
            C::Authentication
                | C::SaslAuthenticationFailed
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
        )
    );
    if refused {
        *refusals
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), reason.to_string()));
    }
    tracing::error!("librdkafka: {error}: {reason}");
}

/// The connection settings every producer, admin client and consumer uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaClient {
    pub brokers: String,
    /// librdkafka properties, secrets resolved; applied after strangler's
    /// own, in file order.
    pub properties: Vec<(String, String)>,
    /// The consumer group of a sink; `{sink}` is its name.
    pub group: String,
    pub client_id: Option<String>,
    /// Refusals seen by any client made from this one.
    pub refusals: Refusals,
}

impl KafkaClient {
    /// Plain connection to `brokers` (tests, the demo).
    pub fn new(brokers: &str) -> KafkaClient {
        KafkaClient {
            brokers: brokers.to_string(),
            properties: Vec::new(),
            group: strangler_config::DEFAULT_CONSUMER_GROUP.to_string(),
            client_id: None,
            refusals: Refusals::default(),
        }
    }

    /// The client of a `kind = "kafka"` transport, with its secrets read
    /// now; `None` for the embedded transport. The error names the property
    /// and the variable or file that is missing.
    pub fn from_transport(t: &CdcTransport) -> Result<Option<KafkaClient>, String> {
        let CdcTransport::Kafka {
            brokers,
            properties,
            consumer_group,
            client_id,
            ..
        } = t
        else {
            return Ok(None);
        };
        let properties = properties
            .iter()
            .map(|p| resolve(p).map(|v| (p.name.clone(), v)))
            .collect::<Result<_, _>>()?;
        Ok(Some(KafkaClient {
            brokers: brokers.clone(),
            properties,
            group: consumer_group.clone(),
            client_id: client_id.clone(),
            refusals: Refusals::default(),
        }))
    }

    /// The context clients are created with (keeps refusals).
    pub fn context(&self) -> Watch {
        Watch {
            refusals: self.refusals.clone(),
        }
    }

    /// `e`, or the refusal behind it: a failure while the brokers refused
    /// the credentials or rights is that refusal (fatal), not an outage.
    pub fn judge(&self, e: super::TransportError) -> super::TransportError {
        match (&e, self.refusals.get()) {
            (super::TransportError::Kafka(_), Some(reason)) => {
                super::TransportError::Refused(reason)
            }
            _ => e,
        }
    }

    /// A librdkafka configuration: the brokers, the client id, then the
    /// user's properties.
    pub fn config(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.brokers);
        if let Some(id) = &self.client_id {
            cfg.set("client.id", id);
        }
        cfg
    }

    /// Applies the user's properties last, over strangler's defaults (the
    /// ones strangler's guarantees rest on cannot be set: see
    /// `strangler_config::RESERVED_KAFKA_PROPERTIES`).
    pub fn apply_properties(&self, cfg: &mut ClientConfig) {
        for (k, v) in &self.properties {
            cfg.set(k, v);
        }
    }

    /// The consumer group of `sink`.
    pub fn group_of(&self, sink: &str) -> String {
        self.group.replace("{sink}", sink)
    }
}

/// A property's value: as written, or from its environment variable or
/// file.
fn resolve(p: &KafkaProperty) -> Result<String, String> {
    match &p.source {
        strangler_config::PropertySource::Value(v) => Ok(v.clone()),
        strangler_config::PropertySource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(format!(
                "cdc.transport.properties: {:?} comes from the environment variable {var}, which is not set (or empty)",
                p.name
            )),
        },
        strangler_config::PropertySource::File(path) => std::fs::read_to_string(path)
            .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| {
                format!(
                    "cdc.transport.properties: {:?} comes from the file {}: {e}",
                    p.name,
                    path.display()
                )
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_config::PropertySource;

    fn transport(properties: Vec<KafkaProperty>) -> CdcTransport {
        CdcTransport::Kafka {
            brokers: "b:9092".into(),
            topic_prefix: "shop".into(),
            properties,
            consumer_group: "prod-{sink}".into(),
            client_id: Some("strangler-prod".into()),
        }
    }

    #[test]
    fn secrets_come_from_the_environment_or_a_file_and_their_absence_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let var = format!("STRANGLER_TEST_KAFKA_USER_{}", std::process::id());
        // Set before any thread reads the environment in this test process.
        std::env::set_var(&var, "alice");
        let props = vec![
            KafkaProperty {
                name: "security.protocol".into(),
                source: PropertySource::Value("SASL_SSL".into()),
            },
            KafkaProperty {
                name: "sasl.username".into(),
                source: PropertySource::Env(var.clone()),
            },
            KafkaProperty {
                name: "sasl.password".into(),
                source: PropertySource::File(file),
            },
        ];
        let client = KafkaClient::from_transport(&transport(props))
            .expect("resolved")
            .expect("kafka");
        assert_eq!(
            client.properties,
            [
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.username".to_string(), "alice".to_string()),
                ("sasl.password".to_string(), "s3cret".to_string()),
            ]
        );
        assert_eq!(client.group_of("catalog"), "prod-catalog");
        let missing = vec![KafkaProperty {
            name: "sasl.password".into(),
            source: PropertySource::Env("STRANGLER_TEST_UNSET_VARIABLE".into()),
        }];
        let e = KafkaClient::from_transport(&transport(missing)).expect_err("unset");
        assert!(
            e.contains("\"sasl.password\"") && e.contains("STRANGLER_TEST_UNSET_VARIABLE"),
            "{e}"
        );
    }

    #[test]
    fn properties_reach_librdkafka() {
        // librdkafka itself judges what it is given: an unknown property is
        // refused by name, a SASL setup is accepted.
        let mut client = KafkaClient::new("127.0.0.1:9");
        client.properties = vec![("sasl.mechanisms".into(), "PLAIN".into())];
        let mut cfg = client.config();
        client.apply_properties(&mut cfg);
        cfg.set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.username", "u")
            .set("sasl.password", "p");
        let made: Result<rdkafka::producer::BaseProducer, _> = cfg.create();
        assert!(made.is_ok(), "{:?}", made.err());
        // Built with TLS and SCRAM (the `ssl` feature): librdkafka reads the
        // CA file with OpenSSL — the system's bundle is taken, an empty
        // file refused by name.
        let tls = |ca: &str| {
            let mut cfg = cfg.clone();
            cfg.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("ssl.ca.location", ca)
                .set("ssl.endpoint.identification.algorithm", "https");
            cfg.create::<rdkafka::producer::BaseProducer>()
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(tls("/etc/ssl/certs/ca-certificates.crt"), None);
        let empty = std::env::temp_dir().join(format!("strangler-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "").expect("ca file");
        let refused = tls(empty.to_str().unwrap_or_default());
        let _ = std::fs::remove_file(&empty);
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("ssl.ca.location")),
            "{refused:?}"
        );
        client.properties = vec![("no.such.property".into(), "1".into())];
        let mut cfg = client.config();
        client.apply_properties(&mut cfg);
        let e = cfg
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no.such.property"), "{e}");
    }
}
