//! Hot-path benchmarks: the ClientHello parser and the route table lookup; the status page
//! of 10,000 routes, which the admin endpoint renders off the connection path; and one
//! cluster's discovery refresh in a table of 100,000 discovered routes.
//!
//! Run with `cargo bench --bench hotpath`. The whole run is tuned to finish in well under
//! two minutes on a small machine; pass criterion flags after `--` to change that, e.g.
//! `cargo bench --bench hotpath -- lookup`.
//!
//! Captured ClientHellos are read at run time from `tests/fixtures/clienthello/`. A missing
//! capture is skipped with a message, so the bench still runs on a partial checkout.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use snigate_core::clienthello::{parse, Parse};
use snigate_core::routes::{Route, RouteTable, SniPattern, Upstream, UpstreamHost, UpstreamPort};

/// Captures benchmarked one by one, in this order.
const FIXTURES: &[&str] = &[
    "openssl",
    "curl",
    "kcat",
    "java",
    "python",
    "pq-x25519mlkem768",
    "openssl-two-records",
    "pq-many-records",
];

/// Captures also fed one byte at a time (every prefix parsed in turn).
const TRICKLED: &[&str] = &["openssl", "openssl-two-records"];

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clienthello")
}

/// Reads one capture, or says why it is skipped.
fn load_fixture(name: &str) -> Option<Vec<u8>> {
    let path = fixture_dir().join(format!("{name}.bin"));
    match std::fs::read(&path) {
        Ok(bytes) => {
            match parse(&bytes) {
                Parse::Complete(h) => eprintln!(
                    "fixture {name}: {} bytes, hello_len {}, record_bytes {}, sni {:?}",
                    bytes.len(),
                    h.hello_len,
                    h.record_bytes,
                    h.sni
                ),
                other => {
                    eprintln!("fixture {name}: WARNING, does not parse as complete: {other:?}")
                }
            }
            Some(bytes)
        }
        Err(e) => {
            eprintln!("fixture {name}: skipped ({}: {e})", path.display());
            None
        }
    }
}

/// A small hand-built hello (SNI + ALPN) so the parse group is never empty.
fn synthetic_hello() -> Vec<u8> {
    let name = b"b0-pkc-1.region0.aws.confluent.test";
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(32);
    body.extend_from_slice(&[0xa5; 32]); // session id
    body.extend_from_slice(&[0, 6, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]); // suites
    body.extend_from_slice(&[1, 0]); // compression

    let mut exts = Vec::new();
    // server_name
    let mut entry = vec![0];
    entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
    entry.extend_from_slice(name);
    let mut sni = (entry.len() as u16).to_be_bytes().to_vec();
    sni.extend_from_slice(&entry);
    exts.extend_from_slice(&0u16.to_be_bytes());
    exts.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni);
    // ALPN: h2, http/1.1
    let alpn: &[u8] = &[
        0, 12, 2, b'h', b'2', 8, b'h', b't', b't', b'p', b'/', b'1', b'.', b'1',
    ];
    exts.extend_from_slice(&16u16.to_be_bytes());
    exts.extend_from_slice(&(alpn.len() as u16).to_be_bytes());
    exts.extend_from_slice(alpn);
    // an opaque extension standing in for key shares and the like
    exts.extend_from_slice(&51u16.to_be_bytes());
    exts.extend_from_slice(&200u16.to_be_bytes());
    exts.extend_from_slice(&[0x42; 200]);

    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);

    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    assert!(
        matches!(parse(&rec), Parse::Complete(ref h) if h.sni.as_deref() == Some("b0-pkc-1.region0.aws.confluent.test")),
        "synthetic hello must parse"
    );
    rec
}

fn bench_parse(c: &mut Criterion) {
    let mut inputs: Vec<(String, Vec<u8>)> = vec![("synthetic".into(), synthetic_hello())];
    for name in FIXTURES {
        if let Some(bytes) = load_fixture(name) {
            inputs.push((name.to_string(), bytes));
        }
    }

    let mut group = c.benchmark_group("parse");
    for (name, bytes) in &inputs {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("whole", name), bytes, |b, bytes| {
            b.iter(|| parse(black_box(bytes)))
        });
    }

    // Worst case for a client that trickles its hello: the gateway re-parses the whole
    // buffer after every read, so a one-byte-per-read client costs one parse per prefix.
    for name in TRICKLED {
        let Some((_, bytes)) = inputs.iter().find(|(n, _)| n == name) else {
            eprintln!("trickle {name}: skipped (fixture missing)");
            continue;
        };
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("trickle", name), bytes, |b, bytes| {
            b.iter(|| {
                let mut last = Parse::Incomplete;
                for n in 1..=bytes.len() {
                    last = parse(black_box(&bytes[..n]));
                }
                last
            })
        });
    }
    group.finish();
}

const DOMAIN: &str = "aws.confluent.test";
const REGIONS: usize = 20;
/// Clusters per region, each with `BROKERS` exact broker names.
const CLUSTERS: usize = 550;
const BROKERS: usize = 9;
/// Per-region wildcards below the region wildcard (`*.dom{d}.region{k}...`).
const SUBDOMAINS: usize = 49;

fn upstream() -> Upstream {
    Upstream {
        host: UpstreamHost::Sni,
        port: UpstreamPort::Listener,
        pinned: vec![],
    }
}

/// 99,000 exact broker names plus 1,000 wildcards: 100,000 routes.
fn routes_100k() -> Vec<Route> {
    let mut routes = Vec::with_capacity(REGIONS * (CLUSTERS * BROKERS + SUBDOMAINS + 1));
    for k in 0..REGIONS {
        for j in 0..CLUSTERS {
            for i in 0..BROKERS {
                routes.push(Route::new(
                    SniPattern::Exact(format!("b{i}-pkc-{j}.region{k}.{DOMAIN}").into()),
                    upstream(),
                ));
            }
        }
        routes.push(Route::new(
            SniPattern::Wildcard(format!("region{k}.{DOMAIN}").into()),
            upstream(),
        ));
        for d in 0..SUBDOMAINS {
            routes.push(Route::new(
                SniPattern::Wildcard(format!("dom{d}.region{k}.{DOMAIN}").into()),
                upstream(),
            ));
        }
    }
    routes
}

fn bench_lookup(c: &mut Criterion) {
    let table = RouteTable::new(routes_100k()).expect("no duplicate patterns");
    assert_eq!(table.len(), 100_000);

    // (bench id, requested name, label of the route it must find)
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "exact_hit",
            "b4-pkc-321.region13.aws.confluent.test",
            Some("b4-pkc-321.region13.aws.confluent.test"),
        ),
        (
            "wildcard_longest_suffix",
            "b2-lkc-77.dom31.region7.aws.confluent.test",
            Some("*.dom31.region7.aws.confluent.test"),
        ),
        (
            "wildcard_shorter_suffix",
            "b2-lkc-77.dom999.region7.aws.confluent.test",
            Some("*.region7.aws.confluent.test"),
        ),
        ("miss", "b0-pkc-1.region99.aws.confluent.test", None),
        (
            "mixed_case_trailing_dot",
            "B4-PKC-321.Region13.AWS.Confluent.Test.",
            Some("b4-pkc-321.region13.aws.confluent.test"),
        ),
    ];
    for (id, name, want) in cases {
        let got = table.lookup(name).map(|r| &*r.label);
        assert_eq!(
            got, *want,
            "lookup case {id} ({name}) found the wrong route"
        );
    }

    let mut group = c.benchmark_group("lookup");
    for (id, name, _) in cases {
        group.bench_with_input(BenchmarkId::new("100k", id), name, |b, name| {
            b.iter(|| table.lookup(black_box(name)).is_some())
        });
    }

    // Building the table once per config load: slow, so few samples.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("build_100k", |b| {
        // Generating the routes is setup; dropping the built table is not timed either.
        b.iter_batched(
            routes_100k,
            |routes| RouteTable::new(routes).expect("no duplicate patterns"),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// The status page of a 10,000-route gateway: gathering the figures and writing the first
/// page of routes. Prints the page's size once.
fn bench_status(c: &mut Criterion) {
    use snigate::status::{html, model};
    let table = RouteTable::new(routes_100k().into_iter().take(10_000)).expect("no duplicates");
    let mut samples = model::Samples::default();
    for r in table.routes() {
        samples.push(
            snigate::metrics::ROUTE_BYTES_TOTAL,
            &[("route", &r.label), ("direction", "upstream")],
            1234.0,
        );
    }
    let pools = snigate::upstream::pool::Pools::default();
    let listeners = [("kafka".to_owned(), "0.0.0.0:9092".to_owned())];
    let errors = std::collections::HashMap::new();
    let render = || {
        let page = model::build(
            &samples,
            model::Inputs {
                table: &table,
                pools: &pools,
                listeners: &listeners,
                clusters: &[],
                last_errors: &errors,
                process: model::ProcessRow::default(),
                now: 0,
                page: 0,
            },
        );
        html::render(&page, None)
    };
    let first = render();
    println!(
        "status page of 10,000 routes: {} bytes for the first {} routes",
        first.len(),
        model::ROUTES_PER_PAGE
    );
    let mut group = c.benchmark_group("status_page");
    group.sample_size(20);
    group.bench_function("10k_routes", |b| b.iter(|| black_box(render()).len()));
    group.finish();
}

/// One cluster's refresh in a gateway with 100,020 discovered routes (3,334 clusters of 30
/// brokers): the cluster moves 3 of its 30 brokers, and the table is published with the
/// conflicts of that cluster. This is what a discovery refresh costs the gateway per
/// cluster, whatever the table size.
fn bench_discovery(c: &mut Criterion) {
    use snigate_core::discovery::clusters::Clusters;
    use snigate_core::discovery::state::{ClusterRoutes, Entry, Kind};
    const CLUSTER_COUNT: usize = 3_334;
    let brokers = |cluster: usize, first: usize| {
        let mut r = ClusterRoutes::default();
        for b in first..first + 30 {
            let entry = Entry {
                kind: Kind::Broker,
                port: 9092,
                last_seen: 1,
            };
            r.names
                .insert(format!("b{b}-pkc-c{cluster}.eu-west-2.{DOMAIN}"), entry);
        }
        r
    };
    let order: Vec<String> = (0..CLUSTER_COUNT).map(|i| format!("c{i}")).collect();
    let mut clusters = Clusters::new(RouteTable::default(), order);
    for i in 0..CLUSTER_COUNT {
        clusters.set(&format!("c{i}"), brokers(i, 0));
    }
    let (mut live, _) = clusters.table();
    assert_eq!(live.len(), CLUSTER_COUNT * 30);
    let mut group = c.benchmark_group("discovery");
    group.sample_size(20);
    let mut flip = 0;
    group.bench_function("refresh_one_cluster_of_100k_routes", |b| {
        b.iter(|| {
            // Brokers 0..30 and 3..33 in turn: 3 removed, 3 added, 27 refreshed.
            flip = 3 - flip;
            clusters.set("c1717", brokers(1717, flip));
            let (table, conflicts) = clusters.table_for("c1717");
            // The published table keeps the old layer alive, as the live gateway's does.
            live = table;
            black_box(conflicts.len())
        })
    });
    group.finish();
    assert_eq!(live.len(), CLUSTER_COUNT * 30);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .nresamples(20_000)
}

criterion_group! {
    name = hotpath;
    config = config();
    targets = bench_parse, bench_lookup, bench_status, bench_discovery
}
criterion_main!(hotpath);
