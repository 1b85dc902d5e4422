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
