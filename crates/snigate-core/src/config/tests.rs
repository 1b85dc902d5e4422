use super::*;

const GOOD: &str = r#"
threads: 2
grace_period_seconds: 1
gateway:
  listeners:
    - name: kafka
      address: 127.0.0.1:9092
    - name: https
      address: 127.0.0.1:443
      fallback: default.test:443
  routes:
    - sni: pkc-1.eu.example.test
      upstream: pkc-1.eu.example.test:9092
    - sni: "*.eu.example.test"
      upstream: "{sni}:{port}"
    - sni: pl.example.test
      upstream: pl.example.test:9092
      addresses: [10.0.0.5, "10.0.0.6:19092"]
  admin:
    address: 127.0.0.1:9080
"#;

fn lookup(name: &str) -> Option<String> {
    match name {
        "SECRET_HOST" => Some("hunter2 not a host".into()),
        "PORT" => Some("9093".into()),
        "PROXY_USER" => Some("svc-snigate".into()),
        "PROXY_PASSWORD" => Some("pr0xy-pw".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_yaml_with(text, &lookup)
}

fn err(text: &str) -> String {
    load(text).unwrap_err().to_string()
}

#[test]
fn good_config_loads() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.server.get("threads"), Some(&Value::from(2)));
    assert_eq!(c.gateway.listeners.len(), 2);
    assert_eq!(c.gateway.routes.len(), 3);
    assert_eq!(c.gateway.limits.clienthello_timeout, Duration::from_secs(5));
    let pl = c.gateway.routes.lookup("pl.example.test").unwrap();
    assert_eq!(pl.upstream.pinned.len(), 2);
    assert_eq!(pl.upstream.pinned[1].port(), 19092);
}

#[test]
fn unknown_keys_keep_serde_position() {
    let e = err(&GOOD.replace("  admin:", "  admn:"));
    assert!(
        e.contains("unknown field `admn`") && e.contains("line 19"),
        "{e}"
    );
    let e = err(&GOOD.replace("upstream: pl.", "upstraem: pl."));
    assert!(
        e.contains("gateway.routes[2]") && e.contains("upstraem"),
        "{e}"
    );
    let e = err("gateway:\n  listeners: [\n");
    assert!(e.contains("line"), "{e}");
}

#[test]
fn duplicate_route_names_both() {
    let e = err(&GOOD.replace("sni: pl.example.test", "sni: PKC-1.eu.example.test"));
    assert!(
        e.contains("gateway.routes[2].sni `pkc-1.eu.example.test` duplicates gateway.routes[0]"),
        "{e}"
    );
    let e = err(&GOOD.replace("sni: pl.example.test", "sni: pkc-1.eu.example.test."));
    assert!(
        e.contains("gateway.routes[2].sni `pkc-1.eu.example.test` duplicates gateway.routes[0]"),
        "{e}"
    );
}

/// In a large table, a name that differs from an earlier one only in case and a trailing
/// dot is reported with both positions.
#[test]
fn duplicates_are_found_in_a_large_table() {
    let mut yaml = String::from(
        "gateway:\n  listeners:\n    - name: kafka\n      address: 127.0.0.1:9092\n  routes:\n",
    );
    for i in 0..10_000 {
        yaml.push_str(&format!(
            "    - sni: b{i}.dup.example.test\n      upstream: 127.0.0.2:9092\n"
        ));
    }
    yaml.push_str("    - sni: B5.Dup.Example.Test.\n      upstream: 127.0.0.3:9092\n");
    let e = err(&yaml);
    assert!(
        e.contains("gateway.routes[10000].sni `b5.dup.example.test` duplicates gateway.routes[5]"),
        "{e}"
    );
}

#[test]
fn bad_values_name_their_key_path() {
    let cases = [
        (
            "127.0.0.1:443",
            "127.0.0.1:4x3",
            "gateway.listeners[1].address: invalid address `127.0.0.1:4x3`",
        ),
        (
            "\"*.eu.example.test\"",
            "\"eu.*.example.test\"",
            "gateway.routes[1].sni: invalid wildcard `eu.*.example.test`",
        ),
        (
            "10.0.0.5,",
            "ten,",
            "gateway.routes[2].addresses[0]: invalid pinned address `ten`",
        ),
        (
            "default.test:443",
            "\"{sni}:443\"",
            "gateway.listeners[1].fallback: `{sni}` cannot be used",
        ),
        (
            "name: https",
            "name: kafka",
            "gateway.listeners[1].name `kafka` is already used by gateway.listeners[0]",
        ),
        (
            "127.0.0.1:443",
            "127.0.0.1:9092",
            "already used by listener `kafka`",
        ),
        (
            "name: https",
            "name: \"h s\"",
            "gateway.listeners[1].name: invalid name `h s`",
        ),
    ];
    for (from, to, want) in cases {
        let e = err(&GOOD.replacen(from, to, 1));
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}

#[test]
fn values_from_the_environment_are_never_shown() {
    let e = err(&GOOD.replace("default.test:443", "\"${SECRET_HOST}:443\""));
    assert!(
        e.contains(
            "gateway.listeners[1].fallback: invalid upstream from ${SECRET_HOST} (value not shown)"
        ),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    let e = err(&GOOD.replace("pl.example.test\n", "${SECRET_HOST}\n"));
    assert!(
        !e.contains("hunter2") && e.contains("${SECRET_HOST}"),
        "{e}"
    );
}

#[test]
fn env_references_expand_with_defaults() {
    let c = load(&GOOD.replace("127.0.0.1:9092", "127.0.0.1:${PORT}")).unwrap();
    assert_eq!(c.gateway.listeners[0].address.port(), 9093);
    let c = load(&GOOD.replace("127.0.0.1:9092", "127.0.0.1:${UNSET_PORT:-9094}")).unwrap();
    assert_eq!(c.gateway.listeners[0].address.port(), 9094);
    let e = err(&GOOD.replace("default.test", "${SNIGATE_TEST_SURELY_UNSET}"));
    assert!(e.contains("gateway.listeners[1].fallback: environment variable SNIGATE_TEST_SURELY_UNSET is not set"), "{e}");
}

#[test]
fn structural_errors() {
    assert!(err("threads: 1\n").contains("no `gateway:` section"));
    assert!(err("gateway:\n  listeners: []\n").contains("listeners is empty"));
    let many = |n: usize, admin: bool| {
        let mut y = String::from("gateway:\n  listeners:\n");
        for i in 0..n {
            y.push_str(&format!(
                "    - name: l{i}\n      address: 127.0.0.1:{}\n",
                10000 + i
            ));
        }
        if admin {
            y.push_str("  admin:\n    address: 127.0.0.1:9080\n");
        }
        y
    };
    assert!(load(&many(32, false)).is_ok());
    assert!(load(&many(31, true)).is_ok());
    let e = err(&many(32, true));
    assert!(
        e.starts_with("gateway.listeners has 32 listeners; at most 31 fit"),
        "{e}"
    );
    assert!(err("- a\n").contains("must be a YAML mapping"));
    let e = err(&GOOD.replace("admin:", "reload: upgrade\n  admin:"));
    assert!(e.contains("no clusters are configured"), "{e}");
    let e = err(&GOOD.replace("  admin:", "  clienthello_timeout_ms: 0\n  admin:"));
    assert!(
        e.contains("gateway.clienthello_timeout_ms must be between 1 and 600000, got 0"),
        "{e}"
    );
}

#[test]
fn clusters() {
    let text = GOOD.replace(
        "  admin:",
        "  clusters:\n    - name: a\n      bootstrap: SASL_SSL://pkc-1.test:9092\n      api_key: k\n      api_secret: s\n      rest: https://pkac-1.test/\n    - name: a\n      bootstrap: b.test\n  admin:",
    );
    let e = err(&text);
    assert!(
        e.contains("gateway.clusters[1].name `a` is already used by gateway.clusters[0]"),
        "{e}"
    );
    let c = load(&text.replacen(
        "name: a\n      bootstrap: b",
        "name: b\n      bootstrap: b",
        1,
    ))
    .unwrap();
    let a = &c.gateway.clusters[0];
    assert_eq!(a.bootstrap, ("pkc-1.test".into(), 9092));
    assert_eq!(a.rest, Some(("pkac-1.test".into(), 443)));
    assert_eq!(format!("{:?}", a.credentials), "Some((MASKED, MASKED))");
    assert_eq!(c.gateway.clusters[1].bootstrap, ("b.test".into(), 9092));
    let e = err(&text.replace("      api_secret: s\n", ""));
    assert!(e.contains("gateway.clusters[0].api_key: set both"), "{e}");
}

#[test]
fn server_values_from_the_environment_keep_their_type() {
    let c = load(&GOOD.replace(
        "threads: 2",
        "threads: ${PORT}\npid_file: /run/${UNSET:-snigate}.pid",
    ))
    .unwrap();
    assert_eq!(c.server.get("threads"), Some(&Value::from(9093)));
    assert_eq!(
        c.server.get("pid_file"),
        Some(&Value::from("/run/snigate.pid"))
    );
}

const POOL: &str = r#"
gateway:
  listeners:
    - name: https
      address: 127.0.0.1:443
  health_check: { type: tcp, interval_ms: 1000, timeout_ms: 500 }
  routes:
    - sni: "*.kube.example.test"
      servers:
        - address: 127.0.8.1:443
        - address: kube-2.example.test:443
          weight: 2
          max_connections: 128
        - address: 127.0.8.9:443
          backup: true
      balance: least_connections
      retries: 1
      health_check: { type: tls, rise: 3 }
    - sni: one.example.test
      servers:
        - address: 127.0.8.1:443
      health_check: none
"#;

#[test]
fn pools_load_with_their_defaults() {
    use crate::pool::{Balance, CheckKind};
    let c = load(POOL).unwrap();
    let kube = c.gateway.routes.lookup("a.kube.example.test").unwrap();
    let pool = kube.pool.as_ref().unwrap();
    assert_eq!(pool.servers.len(), 3);
    assert_eq!(pool.servers[1].host, "kube-2.example.test");
    assert_eq!(
        (pool.servers[1].weight, pool.servers[1].max_connections),
        (2, Some(128))
    );
    assert!(pool.servers[2].backup && !pool.servers[0].backup);
    assert_eq!(pool.balance, Balance::LeastConnections);
    assert_eq!(pool.retries, 1);
    let hc = pool.health_check.unwrap();
    assert_eq!(hc.kind, CheckKind::Tls, "the route's type");
    assert_eq!(hc.rise, 3, "the route's rise");
    assert_eq!(
        hc.interval,
        Duration::from_millis(1000),
        "the gateway's interval"
    );
    assert_eq!(hc.fall, 3, "HAProxy's fall");
    assert_eq!(
        kube.upstream.to_string(),
        "127.0.8.1:443",
        "the first primary"
    );
    let one = c.gateway.routes.lookup("one.example.test").unwrap();
    let one = one.pool.as_ref().unwrap();
    assert_eq!(one.health_check, None);
    assert_eq!((one.balance, one.retries), (Balance::RoundRobin, 2));
}

#[test]
fn bad_pools_name_the_key_and_the_fix() {
    let cases = [
        (
            POOL.replace(
                "      servers:\n        - address: 127.0.8.1:443\n      health_check: none",
                "      servers: []",
            ),
            "gateway.routes[1].servers: the list is empty",
        ),
        (
            POOL.replace("kube-2.example.test:443", "127.0.8.1:443"),
            "gateway.routes[0].servers: server 127.0.8.1:443 is listed twice",
        ),
        (
            POOL.replace(
                "      servers:\n        - address: 127.0.8.1:443\n      health_check: none",
                "      servers:\n        - address: 127.0.8.1:443\n          weight: 0\n        - address: 127.0.8.2:443\n          weight: 0",
            ),
            "every server has weight 0",
        ),
        (
            POOL.replace(
                "      servers:\n        - address: 127.0.8.1:443\n      health_check: none",
                "      upstream: one.example.test:443\n      servers:\n        - address: 127.0.8.1:443",
            ),
            "gateway.routes[1]: has both `upstream:` and `servers:`",
        ),
        (
            POOL.replace("{ type: tls, rise: 3 }", "{ interval_ms: 50, timeout_ms: 10 }"),
            "gateway.routes[0].health_check: interval_ms 50 is under the minimum of 100",
        ),
        (
            POOL.replace("{ type: tls, rise: 3 }", "{ interval_ms: 500, timeout_ms: 800 }"),
            "timeout_ms 800 is longer than interval_ms 500",
        ),
        (
            POOL.replace(
                "      servers:\n        - address: 127.0.8.1:443\n      health_check: none",
                "      servers:\n        - address: 127.0.8.1:443\n          backup: true",
            ),
            "gateway.routes[1].servers: every server is `backup: true`",
        ),
        (
            POOL.replace("balance: least_connections", "balance: leastconn"),
            "gateway.routes[0].balance: `leastconn` is not one of `round_robin`, `least_connections` or `source_hash`",
        ),
        (
            POOL.replace("{ type: tls, rise: 3 }", "{ type: http }"),
            "gateway.routes[0].health_check.type: `http` is not one of `tcp` or `tls`",
        ),
        (
            POOL.replace("{ type: tls, rise: 3 }", "{ typ: tls }"),
            "gateway.routes[0].health_check: unknown field `typ`",
        ),
        (
            POOL.replace("address: 127.0.8.9:443", "address: \"{sni}:443\""),
            "gateway.routes[0].servers[2].address",
        ),
        (
            GOOD.replace(
                "      upstream: pl.example.test:9092\n",
                "      upstream: pl.example.test:9092\n      balance: source_hash\n",
            ),
            "gateway.routes[2].balance: only a route with `servers:` has a pool",
        ),
    ];
    for (text, want) in cases {
        let e = err(&text);
        assert!(e.contains(want), "want {want:?} in: {e}");
    }
}

#[test]
fn egress_proxies_are_set_gateway_wide_and_per_route() {
    let text = GOOD
        .replace(
            "  admin:\n",
            "  egress_proxy: http://${PROXY_USER}:${PROXY_PASSWORD}@proxy.corp.test:3128\n  admin:\n",
        )
        .replace(
            "      upstream: pl.example.test:9092\n",
            "      upstream: pl.example.test:9092\n      egress_proxy: none\n",
        )
        .replace(
            "      upstream: pkc-1.eu.example.test:9092\n",
            "      upstream: pkc-1.eu.example.test:9092\n      egress_proxy: socks5://socks.corp.test:1080\n",
        );
    let c = load(&text).unwrap();
    let gw = c.gateway.egress_proxy.clone().unwrap();
    assert_eq!(&*gw.label, "http://proxy.corp.test:3128");
    let (user, pass) = gw.auth.clone().unwrap();
    assert_eq!((user.expose(), pass.expose()), ("svc-snigate", "pr0xy-pw"));
    assert!(c.gateway.warnings.is_empty(), "{:?}", c.gateway.warnings);
    let t = &c.gateway.routes;
    let proxy_of = |sni: &str| {
        t.lookup(sni)
            .unwrap()
            .egress
            .resolve(c.gateway.egress_proxy.as_ref())
            .map(|p| p.label.to_string())
    };
    assert_eq!(proxy_of("pl.example.test"), None);
    assert_eq!(
        proxy_of("x.eu.example.test").as_deref(),
        Some("http://proxy.corp.test:3128")
    );
    assert_eq!(
        proxy_of("pkc-1.eu.example.test").as_deref(),
        Some("socks5://socks.corp.test:1080")
    );
    assert!(
        !format!("{c:?}").contains("pr0xy-pw"),
        "Debug shows the password"
    );
}

#[test]
fn a_literal_proxy_password_is_a_warning_and_bad_proxies_are_errors() {
    let pinned = "      addresses: [10.0.0.5, \"10.0.0.6:19092\"]\n";
    let with = |value: &str| {
        GOOD.replace(
            "  admin:\n",
            &format!("  egress_proxy: \"{value}\"\n  admin:\n"),
        )
        .replace(pinned, &format!("      egress_proxy: none\n{pinned}"))
    };
    let e = err(&GOOD.replace(
        "  admin:\n",
        "  egress_proxy: http://p.test:3128\n  admin:\n",
    ));
    assert!(
        e.starts_with("gateway.routes[2].addresses: the egress proxy connects"),
        "{e}"
    );
    let c = load(&with("http://u:literal-pw@proxy.corp.test:3128")).unwrap();
    assert_eq!(c.gateway.warnings.len(), 1);
    let w = &c.gateway.warnings[0];
    assert!(
        w.starts_with("gateway.egress_proxy: the proxy password is written in the file"),
        "{w}"
    );
    assert!(!w.contains("literal-pw"), "{w}");
    let e = err(&with("ftp://u:literal-pw@proxy.corp.test:21"));
    assert!(
        e.starts_with("gateway.egress_proxy: ") && !e.contains("literal-pw"),
        "{e}"
    );
    let e = err(&with("http://${NOT_SET_ANYWHERE}@p.test:3128"));
    assert!(e.contains("NOT_SET_ANYWHERE"), "{e}");
    let pool = GOOD.replace(
        "  admin:\n",
        "  egress_proxy: http://p.test:3128\n  admin:\n",
    ).replace(
        "    - sni: pl.example.test\n      upstream: pl.example.test:9092\n      addresses: [10.0.0.5, \"10.0.0.6:19092\"]\n",
        "    - sni: pl.example.test\n      servers:\n        - address: 10.0.0.5:9092\n",
    );
    let e = err(&pool);
    assert!(
        e.starts_with("gateway.routes[2]: a route with `servers:`")
            && e.contains("egress_proxy: none"),
        "{e}"
    );
    assert!(load(&pool.replace(
        "        - address: 10.0.0.5:9092\n",
        "        - address: 10.0.0.5:9092\n      egress_proxy: none\n"
    ))
    .is_ok());
}

#[test]
fn a_proxy_that_is_one_of_our_listeners_is_refused() {
    let with = |value: &str| {
        GOOD.replace(
            "  admin:\n",
            &format!("  egress_proxy: \"{value}\"\n  admin:\n"),
        )
        .replace(
            "      addresses: [10.0.0.5, \"10.0.0.6:19092\"]\n",
            "      addresses: [10.0.0.5, \"10.0.0.6:19092\"]\n      egress_proxy: none\n",
        )
    };
    for proxy in [
        "http://127.0.0.1:9092",
        "socks5://u:pw@localhost:443",
        "http://0.0.0.0:443",
    ] {
        let e = err(&with(proxy));
        assert!(
            e.starts_with("gateway.egress_proxy: the proxy ")
                && e.contains("is the gateway's own listener"),
            "{proxy}: {e}"
        );
        assert!(!e.contains(":pw@"), "{e}");
    }
    // Another port, or another address, is someone else's.
    for proxy in ["http://127.0.0.1:3128", "http://127.0.0.2:9092"] {
        assert!(load(&with(proxy)).is_ok(), "{proxy}");
    }
}
