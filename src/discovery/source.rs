//! Where a cluster's broker list comes from. The refresh service only sees this trait, so
//! its rules are tested in-process with a scripted source, and the real one asks the
//! cluster with librdkafka ([`super::kafka::KafkaSource`]).

use async_trait::async_trait;
use snigate_core::discovery::refresh::Broker;
use snigate_core::discovery::statefile::StateFileError;
use std::time::Duration;

/// Fetches one cluster's brokers.
#[async_trait]
pub trait BrokerSource: Send + Sync {
    /// The brokers the cluster advertises now.
    async fn brokers(&self) -> Result<Vec<Broker>, SourceError>;
}

/// Why the broker list could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The Kafka client could not be created (a bad librdkafka property, say).
    #[error("cannot create the Kafka client: {0}; check the cluster's librdkafka properties")]
    Client(String),
    /// The metadata request failed; `detail` is the client's last error, such as an
    /// authentication failure.
    #[error("metadata request failed: {what}{}", detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Metadata {
        /// librdkafka's error.
        what: String,
        /// The client's last error, if any.
        detail: Option<String>,
    },
    /// The request did not finish in time.
    #[error("metadata request timed out after {0:?}")]
    Timeout(Duration),
    /// The blocking task running the request failed.
    #[error("metadata task failed: {0}")]
    Task(String),
}

/// Why a refresh produced no new routes. The last good routes stay either way.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The broker list could not be fetched.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The metadata came back without brokers.
    #[error("the metadata lists zero brokers")]
    ZeroBrokers,
    /// The new routes could not be saved.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
    /// The new routes could not be published.
    #[error(transparent)]
    Update(#[from] super::hub::UpdateError),
}

impl RefreshError {
    /// The refresh outcome counted for this error: `partial` for an unusable answer,
    /// `failed` otherwise.
    pub fn outcome(&self) -> &'static str {
        match self {
            RefreshError::ZeroBrokers => "partial",
            _ => "failed",
        }
    }
}
