//! Fetching a cluster's broker list with librdkafka (rdkafka). The calls block, so
//! [`KafkaSource`] runs them on Tokio's blocking pool under a timeout.

use super::source::{BrokerSource, SourceError};
use async_trait::async_trait;
use rdkafka::bindings as rd;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer};
use snigate_core::config::ClusterConfig;
pub use snigate_core::discovery::refresh::Broker;
use std::ffi::CStr;
use std::sync::Mutex;
use std::time::Duration;

/// Keeps the client's errors during one request (an authentication failure, say) for the
/// refresh report.
#[derive(Default)]
pub struct Context {
    errors: Mutex<Vec<String>>,
}

/// True for an error that says the credentials were refused.
fn is_auth(error: &str) -> bool {
    error.contains("uthenticat") || error.contains("SASL")
}

impl Context {
    fn clear(&self) {
        if let Ok(mut e) = self.errors.lock() {
            e.clear();
        }
    }

    /// The most telling error seen: an authentication failure before anything else.
    fn telling(&self) -> Option<String> {
        let errors = self.errors.lock().ok()?;
        errors
            .iter()
            .find(|e| is_auth(e))
            .or_else(|| errors.last())
            .cloned()
    }

    fn has_auth(&self) -> bool {
        self.errors
            .lock()
            .is_ok_and(|e| e.iter().any(|x| is_auth(x)))
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 32 {
                errors.push(format!("{error}: {reason}"));
            }
        }
    }

    // librdkafka's own lines (one per broker and retry) go to debug: snigate reports each
    // failed refresh itself, once, with the reason.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log::debug!(target: "librdkafka", "{fac}: {log_message}");
    }
}

impl rdkafka::producer::ProducerContext for Context {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// A Kafka client used only for metadata.
pub struct MetadataClient {
    producer: BaseProducer<Context>,
}

impl MetadataClient {
    /// Creates the client. SASL/PLAIN over TLS is the default when credentials are given;
    /// the cluster's `librdkafka:` properties are applied last, as they are.
    pub fn new(cluster: &ClusterConfig) -> Result<Self, SourceError> {
        let mut cfg = ClientConfig::new();
        cfg.set(
            "bootstrap.servers",
            format!("{}:{}", cluster.bootstrap.0, cluster.bootstrap.1),
        )
        .set("client.id", format!("snigate-discovery-{}", cluster.name))
        .set("log_level", "4");
        if let Some((key, secret)) = &cluster.credentials {
            cfg.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanisms", "PLAIN")
                .set("sasl.username", key.expose())
                .set("sasl.password", secret.expose());
        }
        for (k, v) in &cluster.librdkafka {
            cfg.set(k, v.expose());
        }
        let producer = cfg
            .create_with_context(Context::default())
            .map_err(|e| SourceError::Client(e.to_string()))?;
        Ok(MetadataClient { producer })
    }

    /// Fetches the broker list (no topics). Blocks up to `timeout`.
    pub fn brokers(&self, timeout: Duration) -> Result<Vec<Broker>, SourceError> {
        // Client errors reach the context only when the handle is polled: drain old ones.
        self.producer.poll(Duration::ZERO);
        self.producer.context().clear();
        let mut md: *const rd::rd_kafka_metadata_t = std::ptr::null();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the handle is valid for the life of `self.producer`; `md` is freed below.
        let err = unsafe {
            rd::rd_kafka_metadata(
                self.producer.client().native_ptr(),
                0,
                std::ptr::null_mut(),
                &mut md,
                timeout_ms,
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || md.is_null() {
            // SAFETY: rd_kafka_err2str returns a static string.
            let what = unsafe { CStr::from_ptr(rd::rd_kafka_err2str(err)) }.to_string_lossy();
            // The client's own errors reach the context only when polled, and an
            // authentication failure may still be on its way: wait for it a little, so
            // that the first failed refresh already names it.
            let context = self.producer.context();
            for _ in 0..20 {
                self.producer.poll(Duration::from_millis(50));
                if context.has_auth() {
                    break;
                }
            }
            return Err(SourceError::Metadata {
                what: what.into_owned(),
                detail: context.telling(),
            });
        }
        let mut out = Vec::new();
        // SAFETY: `md` is a valid metadata object until destroyed; the broker array has
        // broker_cnt entries with NUL-terminated hosts.
        unsafe {
            let m = &*md;
            let count = usize::try_from(m.broker_cnt).unwrap_or(0);
            if !m.brokers.is_null() {
                for b in std::slice::from_raw_parts(m.brokers, count) {
                    if b.host.is_null() {
                        continue;
                    }
                    out.push(Broker {
                        id: b.id,
                        host: CStr::from_ptr(b.host).to_string_lossy().into_owned(),
                        port: u16::try_from(b.port).unwrap_or(0),
                    });
                }
            }
            rd::rd_kafka_metadata_destroy(md);
        }
        out.sort_by_key(|b| b.id);
        Ok(out)
    }
}

/// The cluster's brokers, asked for with librdkafka. The client is created on first use and
/// kept, so that its connection to the cluster is reused.
pub struct KafkaSource {
    cluster: ClusterConfig,
    client: Mutex<Option<std::sync::Arc<MetadataClient>>>,
}

impl KafkaSource {
    /// A source for `cluster`.
    pub fn new(cluster: ClusterConfig) -> Self {
        KafkaSource {
            cluster,
            client: Mutex::new(None),
        }
    }

    fn client(&self) -> Result<std::sync::Arc<MetadataClient>, SourceError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let c = std::sync::Arc::new(MetadataClient::new(&self.cluster)?);
        *slot = Some(c.clone());
        Ok(c)
    }
}

#[async_trait]
impl BrokerSource for KafkaSource {
    async fn brokers(&self) -> Result<Vec<Broker>, SourceError> {
        let client = self.client()?;
        let timeout = self.cluster.metadata_timeout;
        let call = tokio::task::spawn_blocking(move || client.brokers(timeout));
        match tokio::time::timeout(timeout + Duration::from_secs(1), call).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SourceError::Task(e.to_string())),
            Err(_) => Err(SourceError::Timeout(timeout)),
        }
    }
}
