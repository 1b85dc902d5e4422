//! Fetching a cluster's broker list with librdkafka (rdkafka). The calls block, so
//! [`KafkaSource`] runs them on Tokio's blocking pool under a timeout. With an egress
//! proxy, librdkafka's name lookups open tunnels through it (see [`super::tunnel`]).

use super::source::{BrokerSource, SourceError};
use super::tunnel::Tunnels;
use async_trait::async_trait;
use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use snigate_core::config::ClusterConfig;
pub use snigate_core::discovery::refresh::Broker;
use snigate_core::egress::EgressProxy;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// librdkafka's name-lookup hook (in its header since 2.2; rdkafka-sys does not bind it).
type ResolveCb = unsafe extern "C" fn(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
    opaque: *mut c_void,
) -> c_int;

extern "C" {
    fn rd_kafka_conf_set_resolve_cb(conf: *mut rd::rd_kafka_conf_t, resolve_cb: Option<ResolveCb>);
}

/// Keeps the client's errors during one request (an authentication failure, say) for the
/// refresh report, and opens the tunnels of a client behind an egress proxy.
#[derive(Default)]
pub struct Context {
    errors: Mutex<Vec<String>>,
    tunnels: Option<Tunnels>,
}

/// Answers librdkafka's lookup of `node:service` with a tunnel's loopback address; called
/// again with everything but `res` null to free an answer.
unsafe extern "C" fn resolve(
    node: *const c_char,
    service: *const c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
    opaque: *mut c_void,
) -> c_int {
    if node.is_null() && service.is_null() && hints.is_null() {
        if !res.is_null() && !(*res).is_null() {
            libc::freeaddrinfo(*res);
        }
        return 0;
    }
    if node.is_null() || service.is_null() || opaque.is_null() || res.is_null() {
        return libc::EAI_NONAME;
    }
    // SAFETY (caller): `opaque` is the client's context, which rdkafka keeps alive as long
    // as the client; `node` and `service` are NUL-terminated strings.
    let context = &*(opaque as *const Context);
    let host = CStr::from_ptr(node).to_string_lossy();
    let port = CStr::from_ptr(service).to_string_lossy().parse::<u16>();
    let Some(tunnels) = context.tunnels.as_ref() else {
        return libc::getaddrinfo(node, service, hints, res);
    };
    // Never fall back to a lookup of our own: the name must reach the proxy, not DNS.
    let Ok(port) = port else {
        return libc::EAI_SERVICE;
    };
    let opened =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tunnels.open(&host, port)));
    let addr = match opened {
        Ok(Ok(addr)) => addr,
        Ok(Err(e)) => {
            log::warn!("discovery: cannot open a tunnel to {host}:{port}: {e}");
            return libc::EAI_FAIL;
        }
        Err(_) => return libc::EAI_FAIL,
    };
    let (Ok(ip), Ok(port)) = (
        CString::new(addr.ip().to_string()),
        CString::new(addr.port().to_string()),
    ) else {
        return libc::EAI_FAIL;
    };
    // The tunnel is an IPv4 loopback address, whatever family librdkafka prefers.
    let mut numeric: libc::addrinfo = std::mem::zeroed();
    numeric.ai_family = libc::AF_INET;
    numeric.ai_socktype = libc::SOCK_STREAM;
    numeric.ai_protocol = libc::IPPROTO_TCP;
    numeric.ai_flags = libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
    libc::getaddrinfo(ip.as_ptr(), port.as_ptr(), &numeric, res)
}

/// True for an error that says the credentials were refused.
fn is_auth(error: &str) -> bool {
    error.contains("uthenticat") || error.contains("SASL")
}

impl Context {
    fn push(&self, error: String) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() < 32 {
                errors.push(error);
            }
        }
    }

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
        self.push(format!("{error}: {reason}"));
    }

    // librdkafka's own lines (one per broker and retry) go to debug: snigate reports each
    // failed refresh itself, once, with the reason.
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        log::debug!(target: "librdkafka", "{fac}: {log_message}");
    }
}

/// A Kafka client used only for metadata.
pub struct MetadataClient {
    client: Client<Context>,
}

impl MetadataClient {
    /// Creates the client. SASL/PLAIN over TLS is the default when credentials are given;
    /// the cluster's `librdkafka:` properties are applied last, as they are.
    pub fn new(cluster: &ClusterConfig, tunnels: Option<Tunnels>) -> Result<Self, SourceError> {
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
        if tunnels.is_some() {
            // Each lookup opens a one-shot tunnel: look up again for every connect.
            cfg.set("broker.address.ttl", "0");
        }
        let failed = |e: KafkaError| SourceError::Client(e.to_string());
        let native = cfg.create_native_config().map_err(failed)?;
        if tunnels.is_some() {
            // SAFETY: the config is valid and not yet handed to a client; the callback
            // reads the opaque rdkafka sets to this client's `Context`.
            unsafe { rd_kafka_conf_set_resolve_cb(native.ptr(), Some(resolve)) };
        }
        let context = Context {
            errors: Mutex::default(),
            tunnels,
        };
        let client = Client::new(
            &cfg,
            native,
            rd::rd_kafka_type_t::RD_KAFKA_PRODUCER,
            context,
        )
        .map_err(failed)?;
        Ok(MetadataClient { client })
    }

    /// Serves the client's queued events for up to `timeout`: errors go to the context,
    /// librdkafka's log lines to debug.
    fn poll(&self, timeout: Duration) {
        let mut wait = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the handle is valid for the life of `self.client`; each event and the
        // queue reference are destroyed once, after use.
        unsafe {
            let queue = rd::rd_kafka_queue_get_main(self.client.native_ptr());
            loop {
                let event = rd::rd_kafka_queue_poll(queue, wait);
                if event.is_null() {
                    break;
                }
                wait = 0;
                match rd::rd_kafka_event_type(event) {
                    rd::RD_KAFKA_EVENT_ERROR => {
                        let code = rd::rd_kafka_event_error(event);
                        let what = CStr::from_ptr(rd::rd_kafka_err2str(code)).to_string_lossy();
                        let text = rd::rd_kafka_event_error_string(event);
                        let text = if text.is_null() {
                            String::new()
                        } else {
                            CStr::from_ptr(text).to_string_lossy().into_owned()
                        };
                        self.client.context().push(format!("{what}: {text}"));
                    }
                    rd::RD_KAFKA_EVENT_LOG => {
                        let (mut fac, mut line, mut level) =
                            (std::ptr::null(), std::ptr::null(), 0);
                        if rd::rd_kafka_event_log(event, &mut fac, &mut line, &mut level) == 0
                            && !fac.is_null()
                            && !line.is_null()
                        {
                            log::debug!(
                                target: "librdkafka",
                                "{}: {}",
                                CStr::from_ptr(fac).to_string_lossy(),
                                CStr::from_ptr(line).to_string_lossy()
                            );
                        }
                    }
                    _ => {}
                }
                rd::rd_kafka_event_destroy(event);
            }
            rd::rd_kafka_queue_destroy(queue);
        }
    }

    /// Fetches the broker list (no topics). Blocks up to `timeout`.
    pub fn brokers(&self, timeout: Duration) -> Result<Vec<Broker>, SourceError> {
        // Client errors reach the context only when the handle is polled: drain old ones.
        self.poll(Duration::ZERO);
        self.client.context().clear();
        let mut md: *const rd::rd_kafka_metadata_t = std::ptr::null();
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: the handle is valid for the life of `self.client`; `md` is freed below.
        let err = unsafe {
            rd::rd_kafka_metadata(
                self.client.native_ptr(),
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
            let context = self.client.context();
            for _ in 0..20 {
                self.poll(Duration::from_millis(50));
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
    egress: Option<Arc<EgressProxy>>,
    client: Mutex<Option<std::sync::Arc<MetadataClient>>>,
}

impl KafkaSource {
    /// A source for `cluster`, reached through `egress` when it is set.
    pub fn new(cluster: ClusterConfig, egress: Option<Arc<EgressProxy>>) -> Self {
        KafkaSource {
            cluster,
            egress,
            client: Mutex::new(None),
        }
    }

    fn client(&self) -> Result<std::sync::Arc<MetadataClient>, SourceError> {
        let mut slot = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let tunnels = match &self.egress {
            Some(proxy) => {
                let runtime = tokio::runtime::Handle::try_current().map_err(|e| {
                    SourceError::Client(format!("no runtime for the proxy tunnels: {e}"))
                })?;
                Some(Tunnels::new(
                    proxy.clone(),
                    self.cluster.metadata_timeout,
                    runtime,
                ))
            }
            None => None,
        };
        let c = std::sync::Arc::new(MetadataClient::new(&self.cluster, tunnels)?);
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
