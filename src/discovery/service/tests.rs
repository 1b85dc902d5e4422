//! The refresh loop against a scripted broker source: publishing, the state file, the
//! failure-keeps-last-good rule, the removal grace and the backoff, all in-process.

use super::*;
use crate::discovery::source::SourceError;
use crate::routes::RouteStore;
use snigate_core::discovery::clusters::Clusters;
use snigate_core::discovery::refresh::Broker;
use snigate_core::routes::RouteTable;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

type Answer = Result<Vec<Broker>, SourceError>;

/// Answers from a script, then keeps giving the last answer's brokers; records when it
/// was asked.
struct Scripted {
    script: Mutex<VecDeque<Answer>>,
    asked: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Scripted {
    fn new(script: Vec<Answer>) -> (Box<Self>, Arc<Mutex<Vec<tokio::time::Instant>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let s = Scripted {
            script: Mutex::new(script.into()),
            asked: asked.clone(),
        };
        (Box::new(s), asked)
    }
}

#[async_trait]
impl BrokerSource for Scripted {
    async fn brokers(&self) -> Result<Vec<Broker>, SourceError> {
        self.asked.lock().unwrap().push(tokio::time::Instant::now());
        let mut script = self.script.lock().unwrap();
        match script.pop_front() {
            Some(answer) => answer,
            None => Err(SourceError::Task("script ended".into())),
        }
    }
}

fn brokers(names: &[&str]) -> Answer {
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, n)| Broker {
            id: i as i32,
            host: n.to_string(),
            port: 9092,
        })
        .collect())
}

fn failure() -> Answer {
    Err(SourceError::Metadata {
        what: "Local: Broker transport failure".into(),
        detail: Some("SASL authentication error: Authentication failed".into()),
    })
}

fn cluster(name: &str) -> ClusterConfig {
    ClusterConfig {
        name: name.into(),
        bootstrap: ("pkc.test".into(), 9092),
        credentials: None,
        rest: Some(("pkac.test".into(), 443)),
        schema_registry: None,
        refresh_interval: Duration::from_secs(10),
        removed_broker_grace: Duration::from_secs(60),
        metadata_timeout: Duration::from_secs(1),
        librdkafka: Default::default(),
    }
}

struct Rig {
    dir: std::path::PathBuf,
    hub: Arc<Hub>,
    clock: Arc<AtomicU64>,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("snigate-svc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let clusters = Clusters::new(RouteTable::default(), vec![tag.into()]);
        let store = Arc::new(RouteStore::new(RouteTable::default()));
        let hub = Hub::new(clusters, store).save_to(Some(dir.join("state.yaml")));
        Rig {
            dir,
            hub: Arc::new(hub),
            clock: Arc::new(AtomicU64::new(1_000)),
        }
    }

    fn service(&self, tag: &str, source: Box<Scripted>) -> ClusterService {
        let clock = self.clock.clone();
        ClusterService::new(cluster(tag), self.hub.clone(), source)
            .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
    }

    fn state(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("state.yaml")).ok()
    }

    fn routed(&self, name: &str) -> bool {
        self.hub.table().lookup(name).is_some()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_refresh_publishes_and_saves_only_what_changed() {
    let rig = Rig::new("publish");
    let (source, _) = Scripted::new(vec![
        brokers(&["b0.test", "B1.test"]),
        brokers(&["b0.test", "b1.test"]),
        brokers(&["b0.test", "b1.test", "b2.test"]),
    ]);
    let svc = rig.service("publish", source);
    let change = svc.refresh(true).await.unwrap();
    assert_eq!(
        change.added,
        ["b0.test", "b1.test", "pkac.test", "pkc.test"]
    );
    for name in ["pkc.test", "b0.test", "b1.test", "pkac.test"] {
        assert!(rig.routed(name), "{name}");
    }
    assert!(rig.state().unwrap().contains("b1.test"));
    assert_eq!(metrics::BROKERS.with_label_values(&["publish"]).get(), 2);

    // The same brokers again: nothing to save.
    std::fs::remove_file(rig.dir.join("state.yaml")).unwrap();
    assert!(svc.refresh(false).await.unwrap().is_empty());
    assert_eq!(rig.state(), None, "unchanged routes were written");
    // A new broker: saved.
    svc.refresh(false).await.unwrap();
    assert!(rig.state().unwrap().contains("b2.test"));
    assert!(rig.routed("b2.test"));
}

#[tokio::test]
async fn a_failed_or_empty_refresh_keeps_the_last_good_routes() {
    let rig = Rig::new("keep");
    let (source, _) = Scripted::new(vec![brokers(&["b0.test"]), failure(), brokers(&[])]);
    let svc = rig.service("keep", source);
    svc.refresh(true).await.unwrap();
    let e = svc.refresh(false).await.unwrap_err();
    assert_eq!(e.outcome(), "failed");
    assert!(e.to_string().contains("Authentication failed"), "{e}");
    assert!(rig.routed("b0.test"));
    let e = svc.refresh(false).await.unwrap_err();
    assert_eq!(e.outcome(), "partial");
    assert!(rig.routed("b0.test"));
    assert_eq!(rig.hub.cluster("keep").names.len(), 3);
}

#[tokio::test]
async fn a_vanished_broker_stays_routed_for_its_grace_period() {
    let rig = Rig::new("grace");
    let (source, _) = Scripted::new(vec![
        brokers(&["b0.test", "b1.test"]),
        brokers(&["b0.test"]),
        brokers(&["b0.test"]),
    ]);
    let svc = rig.service("grace", source);
    svc.refresh(true).await.unwrap();
    rig.clock.store(1_030, Ordering::SeqCst);
    let change = svc.refresh(false).await.unwrap();
    assert_eq!(change.retained, ["b1.test"]);
    assert!(rig.routed("b1.test"));
    rig.clock.store(1_061, Ordering::SeqCst);
    let change = svc.refresh(false).await.unwrap();
    assert_eq!(change.removed, ["b1.test"]);
    assert!(!rig.routed("b1.test"));
    assert!(!rig.state().unwrap().contains("b1.test"));
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_up_to_the_refresh_interval() {
    let rig = Rig::new("backoff");
    let mut script = vec![failure(), failure(), failure(), failure(), failure()];
    script.push(brokers(&["b0.test"]));
    script.push(brokers(&["b0.test"]));
    let (source, asked) = Scripted::new(script);
    let svc = Arc::new(rig.service("backoff", source));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn({
        let svc = svc.clone();
        async move { svc.run(rx).await }
    });
    while asked.lock().unwrap().len() < 7 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tx.send(true).unwrap();
    task.await.unwrap();
    let at = asked.lock().unwrap().clone();
    let gaps: Vec<u64> = at.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
    assert_eq!(gaps, [1, 2, 4, 8, 10, 10]);
    assert!(rig.routed("b0.test"));
    let failed = metrics::REFRESHES
        .with_label_values(&["backoff", "failed"])
        .get();
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn upgrade_mode_stages_a_change_and_calls_the_hook() {
    let rig = Rig::new("stage");
    let (source, _) = Scripted::new(vec![
        brokers(&["b0.test"]),
        brokers(&["b0.test", "b1.test"]),
    ]);
    let calls = Arc::new(AtomicUsize::new(0));
    let hook: UpgradeHook = {
        let calls = calls.clone();
        Arc::new(move || {
            calls.fetch_add(1, Ordering::SeqCst);
        })
    };
    let svc = rig
        .service("stage", source)
        .with_reload(ReloadMode::Upgrade, Some(hook));
    svc.refresh(true).await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the first refresh publishes"
    );
    svc.refresh(false).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(
        !rig.routed("b1.test"),
        "the live table waits for the new process"
    );
    assert!(rig.state().unwrap().contains("b1.test"));
}
