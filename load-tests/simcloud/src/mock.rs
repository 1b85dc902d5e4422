//! librdkafka's mock cluster, through rdkafka's raw bindings.

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use std::ffi::{CStr, CString};
use std::net::SocketAddr;

/// A running mock cluster. Dropping it stops the brokers.
pub struct MockCluster {
    // The handle that owns the cluster; kept alive with it.
    _owner: BaseProducer,
    ptr: *mut rd::rd_kafka_mock_cluster_t,
    /// Each broker's real listening address, by broker id (ids start at 1).
    pub listeners: Vec<(i32, SocketAddr)>,
}

// The mock cluster runs on its own thread; its API is thread-safe.
unsafe impl Send for MockCluster {}
unsafe impl Sync for MockCluster {}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

impl MockCluster {
    /// Starts `brokers` brokers on 127.0.0.1.
    pub fn start(brokers: i32) -> Result<MockCluster> {
        let owner: BaseProducer = ClientConfig::new().set("log_level", "3").create()?;
        let ptr = unsafe { rd::rd_kafka_mock_cluster_new(owner.client().native_ptr(), brokers) };
        if ptr.is_null() {
            return Err("rd_kafka_mock_cluster_new failed".into());
        }
        let boot = unsafe { CStr::from_ptr(rd::rd_kafka_mock_cluster_bootstraps(ptr)) }
            .to_string_lossy()
            .into_owned();
        // The bootstrap list names the brokers in id order.
        let mut listeners = Vec::new();
        for (i, addr) in boot.split(',').enumerate() {
            listeners.push((i as i32 + 1, addr.trim().parse()?));
        }
        Ok(MockCluster {
            _owner: owner,
            ptr,
            listeners,
        })
    }

    /// Sets the host and port broker `id` advertises in Metadata.
    pub fn advertise(&self, id: i32, host: &str, port: u16) -> Result<()> {
        let host = CString::new(host)?;
        unsafe {
            rd::rd_kafka_mock_broker_set_host_port(self.ptr, id, host.as_ptr(), i32::from(port))
        };
        Ok(())
    }

    /// Adds broker `id`; it listens on 127.0.0.1 and advertises that address until renamed.
    pub fn add_broker(&self, id: i32) -> Result<()> {
        let err = unsafe { rd::rd_kafka_mock_broker_add(self.ptr, id) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("adding broker {id}: {err:?}").into());
        }
        Ok(())
    }

    /// Removes broker `id` from the cluster.
    pub fn decommission(&self, id: i32) -> Result<()> {
        let err = unsafe { rd::rd_kafka_mock_broker_decommission(self.ptr, id) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("decommissioning broker {id}: {err:?}").into());
        }
        Ok(())
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: i32, replication: i32) -> Result<()> {
        let topic = CString::new(name)?;
        let err = unsafe {
            rd::rd_kafka_mock_topic_create(self.ptr, topic.as_ptr(), partitions, replication)
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(format!("creating topic {name}: {err:?}").into());
        }
        Ok(())
    }
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        // librdkafka requires the cluster to go before the handle that owns it.
        unsafe { rd::rd_kafka_mock_cluster_destroy(self.ptr) };
    }
}
