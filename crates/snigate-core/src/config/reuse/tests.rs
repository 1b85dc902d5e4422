use super::*;

fn lookup(name: &str) -> Option<String> {
    match name {
        "SNI_FROM_ENV" => Some("env.route.test".into()),
        "PROXY_PASSWORD" => Some("s3cret".into()),
        _ => None,
    }
}

fn load(text: &str) -> Result<(Config, crate::config::Reusable), crate::config::ConfigError> {
    Config::from_yaml_reusable_with(text, &lookup)
}

const HEAD: &str = "gateway:\n  listeners:\n    - name: kafka\n      address: 127.0.0.1:9092\n";

#[test]
fn split_finds_each_item_and_the_text_around_them() {
    let text = format!(
        "{HEAD}  routes:   # the routes\n    - sni: a.test\n      upstream: x:1\n\n    # b next\n    -\n      sni: b.test\n      upstream: \"y:2\" # c\n  admin:\n    address: 127.0.0.1:9080\n"
    );
    let s = split(&text).unwrap();
    assert_eq!(s.head, HEAD);
    assert_eq!(s.routes_line, "  routes:   # the routes\n");
    assert_eq!(
        s.items,
        [
            "    - sni: a.test\n      upstream: x:1\n\n    # b next\n",
            "    -\n      sni: b.test\n      upstream: \"y:2\" # c\n"
        ]
    );
    assert_eq!(s.tail, "  admin:\n    address: 127.0.0.1:9080\n");
    // An indentless list, last in the file, without a final newline.
    let text = format!(
        "{HEAD}  routes:\n  - sni: a.test\n    upstream: x:1\n  - sni: b.test\n    upstream: y:2"
    );
    let s = split(&text).unwrap();
    assert_eq!(s.items.len(), 2);
    assert_eq!(s.items[1], "  - sni: b.test\n    upstream: y:2");
    assert_eq!(s.tail, "");
}

#[test]
fn split_declines_what_could_join_lines_across_items() {
    let declined = |items: &str| split(&format!("{HEAD}  routes:\n{items}")).unwrap_err();
    // A quoted scalar that goes on past its line could hide an item start.
    for items in [
        "    - sni: \"a.test\n    - sni: b.test\"\n",
        "    - sni: 'a.test\n      '\n",
        "    - {sni: a.test,\n      upstream: x:1}\n",
        "    - sni: a.test\n      addresses: [\"1.1.1.1:1\",\n        \"2.2.2.2:2\"]\n",
        "    - sni: a.test\n      upstream: >\n        x:1\n",
        "    - &r\n      sni: a.test\n",
        "    - *r\n",
        "    - sni: !!str a.test\n",
        "    - - sni: a.test\n",
        "    - ? sni\n      : a.test\n",
        "    - sni: a.test\n      upstream: \"x:1\"#c\n",
        "    - sni: a.test\n      addresses: [a'b]\n",
    ] {
        assert!(
            matches!(declined(items), Declined::NotSimple { .. }),
            "{items:?}"
        );
    }
    // Lines between the keys' indentation and the items', or at the items' without `- `.
    assert_eq!(
        declined("    - sni: a.test\n   upstream: x:1\n"),
        Declined::NotSimple { line: 7 }
    );
    assert_eq!(
        declined("    - sni: a.test\n    upstream: x:1\n"),
        Declined::NotSimple { line: 7 }
    );
    for text in [
        format!("{HEAD}  routes: []\n"),
        format!("{HEAD}  routes:\n  admin:\n    address: 127.0.0.1:1\n"),
        "gateway: {routes: [{sni: a.test, upstream: x:1}]}\n".to_owned(),
    ] {
        assert_eq!(
            split(&text).unwrap_err(),
            Declined::NoRoutesList,
            "{text:?}"
        );
    }
    for text in [
        format!("{HEAD}  routes:\n    - sni: a.test\n\tupstream: x:1\n"),
        format!("{HEAD}  routes:\r\n    - sni: a.test\r\n"),
        format!("{HEAD}  routes:\n    - sni: \"a.test\u{2028}    - sni: b.test\"\n"),
        // A comment that NEL ends: libyaml reads what follows as a line of its own.
        format!("{HEAD}  routes:\n    - sni: a.test\n      # \u{85}      upstream: &u x.test:1\n    - sni: b.test\n      # \u{85}      upstream: *u\n"),
        // libyaml skips a byte-order mark at the start of a line: `send_proxy` belongs to the
        // last item, not after the list.
        format!("{HEAD}  routes:\n    - sni: a.test\n      upstream: x.test:1\n\u{feff}     send_proxy: v2\n"),
    ] {
        assert_eq!(split(&text).unwrap_err(), Declined::Characters, "{text:?}");
    }
}

#[test]
fn simple_lines_are_one_line_each() {
    for line in [
        "- sni: a.test",
        "sni: \"*.a.test\"   # wildcards are quoted",
        "'sni': 'it''s'",
        "upstream: \"{sni}:9092\"",
        "addresses: [\"10.0.0.1:9092\", '10.0.0.2:9092', 10.0.0.3:9092]",
        "health_check: {type: tls, rise: 3}",
        "sni: it's a plain scalar with \"quotes\" [and] {brackets}",
        "sni: ${SNI}",
        "servers:",
        "- address: 10.0.0.1:9092",
        "- 10.0.0.1:9092",
        "-",
        "sni: a#b",
    ] {
        assert!(simple(line), "{line:?}");
    }
    for line in [
        "sni: \"a.test",
        "sni: 'a.test",
        "sni: [a, b",
        "sni: [\"a\", b\"c]",
        "sni: |",
        "sni: >-",
        "sni: &a a.test",
        "sni: *a",
        "sni: !t a",
        "sni: a: b",
        "\"sni\":a",
        "sni: \"a\" b",
        "- - a",
        "? sni",
    ] {
        assert!(!simple(line), "{line:?}");
    }
}

/// A route item (at indentation 0, to be indented) for step `n` of the property test: most
/// are simple; some use YAML that the split must decline, or fail to check.
fn item(kind: u64, n: u64) -> String {
    match kind % 18 {
        0..=5 => format!("- sni: b{n}.route.test\n  upstream: 10.0.{}.{}:9092\n", n % 7, n % 11),
        6 => format!("-\n  sni: \"*.w{n}.route.test\"\n  upstream: \"{{sni}}:9092\" # comment: \"x\n"),
        7 => format!(
            "- sni: p{n}.route.test\n  servers:\n    - address: 10.1.0.1:9092\n      weight: 2\n    - address: 10.1.0.2:9092\n  balance: least_connections\n"
        ),
        8 => format!("- sni: e{n}.route.test\n  upstream: e.test:1\n  egress_proxy: http://u:pw@10.9.9.9:3128\n"),
        9 => format!("- sni: v{n}.route.test\n  upstream: e.test:1\n  egress_proxy: http://u:${{PROXY_PASSWORD}}@10.9.9.9:3128\n"),
        10 => format!("- 'sni': 'q{n}.route.test'\n  upstream: 'x.test:1'\n\n# between items\n"),
        11 => format!("- sni: a{n}.route.test\n  addresses: [\"10.0.0.1:9092\", '10.0.0.2:9092']\n  upstream: pinned.test:9092\n"),
        12 => format!("- sni: \"m{n}.route.test\n- sni: hidden.route.test\"\n  upstream: x.test:1\n"),
        13 => format!("- sni: f{n}.route.test\n  upstream: >\n    x.test:1\n"),
        14 => format!("- sni: bad..{n}.route.test\n  upstream: x.test:1\n"),
        15 => "- sni: ${SNI_FROM_ENV}\n  upstream: x.test:1\n".to_owned(),
        16 => format!("- {{sni: l{n}.route.test,\n  upstream: x.test:1}}\n"),
        _ => format!("- sni: c{n}.ROUTE.test.\n  upstream: x.test:1\n  send_proxy: v2\n"),
    }
}

fn indent(item: &str, by: usize) -> String {
    item.split_inclusive('\n')
        .map(|l| {
            if l.trim().is_empty() {
                l.to_owned()
            } else {
                format!("{}{l}", " ".repeat(by))
            }
        })
        .collect()
}

/// The config's routes in pattern order (compared field by field, credentials included);
/// and everything else, printed.
fn shown(c: &Config) -> (Vec<Route>, String) {
    let routes = c
        .gateway
        .routes
        .routes()
        .iter()
        .map(|r| Route::clone(r))
        .collect();
    let mut rest = c.clone();
    rest.gateway.routes = RouteTable::default();
    (routes, format!("{rest:?}"))
}

/// Every reload that reuses routes gives exactly the config that parsing the whole file
/// gives; when the whole parse fails, reuse declines. Edits change, add, remove and swap
/// items, and sometimes the text around them.
#[test]
fn reuse_gives_what_the_whole_parse_gives() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut reused, mut declined, mut failed) = (0, 0, 0);
    for layout in 0..4u64 {
        let at = if layout % 2 == 0 { 4 } else { 2 };
        let tail = if layout < 2 {
            "  admin:\n    address: 127.0.0.1:9080\nthreads: 2\n"
        } else {
            ""
        };
        let mut limit = 100;
        let mut items: Vec<String> = (0..40).map(|n| item(next() % 6, n)).collect();
        let render = |items: &[String], limit: u64| {
            let body: String = items.iter().map(|i| indent(i, at)).collect();
            format!("{HEAD}  max_connections: {limit}\n  routes:\n{body}{tail}")
        };
        let text = render(&items, limit);
        let (_, reuse) = load(&text).unwrap();
        let mut reuse = reuse.expect("the first file is laid out for reuse");
        for step in 0..300u64 {
            let n = 1000 + step;
            let i = (next() % items.len() as u64) as usize;
            let mut changed = 1;
            match next() % 10 {
                0..=4 => items[i] = item(next(), n),
                5 => items.insert(i, item(next(), n)),
                6 if items.len() > 2 => {
                    items.remove(i);
                    changed = 0;
                }
                7 => {
                    let j = (next() % items.len() as u64) as usize;
                    items.swap(i, j);
                    changed = 0;
                }
                8 => {
                    // A duplicate of another item.
                    items[i] = items[(i + 1) % items.len()].clone();
                    changed = 0;
                }
                _ => {
                    limit += 1;
                    changed = 0;
                }
            }
            let text = render(&items, limit);
            let whole = Config::from_yaml_with(&text, &lookup);
            match (reuse.reload_with(&text, &lookup), &whole) {
                (Ok(fast), Ok(whole)) => {
                    assert_eq!(shown(&fast.config), shown(whole), "step {step}:\n{text}");
                    // Items whose check warns are checked again every time.
                    let warned = items.iter().filter(|i| i.contains("u:pw@")).count();
                    assert!(
                        fast.parsed <= changed + warned,
                        "step {step}: {} parsed",
                        fast.parsed
                    );
                    reused += 1;
                    reuse = fast.reuse;
                    continue;
                }
                (Ok(_), Err(e)) => {
                    panic!("step {step}: reused, but the whole parse says {e}:\n{text}")
                }
                (Err(_), Ok(_)) => declined += 1,
                (Err(_), Err(_)) => failed += 1,
            }
            // Declined: a reload parses the whole file, and reuses from it next time.
            match load(&text) {
                Ok((_, next_reuse)) => {
                    match next_reuse {
                        Ok(r) => reuse = r,
                        Err(_) => {
                            // Start again from a file that is laid out for reuse.
                            items.retain(|i| !i.contains(['>', '{', '&']) && !i.contains("hidden"));
                            let (_, r) = load(&render(&items, limit)).unwrap();
                            reuse = r.unwrap();
                        }
                    }
                }
                Err(_) => {
                    // The running config stays; the broken item is mended in the file.
                    items[i] = item(0, n);
                    let text = render(&items, limit);
                    let (_, r) = load(&text).unwrap();
                    if let Ok(r) = r {
                        reuse = r;
                    }
                }
            }
        }
    }
    // Every kind of outcome happened, so the comparison above was not vacuous.
    assert!(reused > 400, "{reused} reused");
    assert!(declined > 50, "{declined} declined");
    assert!(failed > 20, "{failed} failed");
}

#[test]
fn a_reload_parses_only_the_changed_items() {
    let items = |moved: u64| -> String {
        (0..1000)
            .map(|i| {
                let port = if i % 100 == 0 { 9000 + moved } else { 9000 };
                format!("    - sni: b{i}.route.test\n      upstream: 10.0.0.1:{port}\n")
            })
            .collect()
    };
    let text = |moved| format!("{HEAD}  routes:\n{}", items(moved));
    let (first, reuse) = load(&text(0)).unwrap();
    let fast = reuse.unwrap().reload_with(&text(1), &lookup).unwrap();
    assert_eq!(fast.parsed, 10);
    let route = fast
        .config
        .gateway
        .routes
        .lookup("b100.route.test")
        .unwrap();
    assert_eq!(route.upstream.to_string(), "10.0.0.1:9001");
    // An unchanged route is the very one the previous table held.
    assert!(Arc::ptr_eq(
        first.gateway.routes.lookup("b1.route.test").unwrap(),
        fast.config.gateway.routes.lookup("b1.route.test").unwrap()
    ));
    // The text around the items changed: the whole file is parsed.
    let outside = format!("{HEAD}  max_connections: 7\n  routes:\n{}", items(1));
    assert_eq!(
        fast.reuse.reload_with(&outside, &lookup).unwrap_err(),
        Declined::OutsideRoutes
    );
}

#[test]
fn a_changed_item_with_a_literal_proxy_password_warns_as_the_whole_parse_does() {
    let text = |extra: &str| {
        format!("{HEAD}  egress_proxy: http://u:Zq7-secret@10.9.9.8:3128\n  routes:\n    - sni: a.test\n      upstream: x.test:1\n{extra}")
    };
    let (_, reuse) = load(&text("")).unwrap();
    let with = text("    - sni: b.test\n      upstream: x.test:1\n      egress_proxy: http://u:Zq7-secret@10.9.9.9:3128\n");
    let fast = reuse.unwrap().reload_with(&with, &lookup).unwrap();
    let whole = Config::from_yaml_with(&with, &lookup).unwrap();
    assert_eq!(fast.config.gateway.warnings, whole.gateway.warnings);
    assert_eq!(fast.config.gateway.warnings.len(), 2);
    // Neither the config nor what the next reload keeps (the file's text) shows it.
    for shown in [format!("{:?}", fast.config), format!("{fast:?}")] {
        assert!(!shown.contains("Zq7-secret"), "{shown}");
    }
    let (_, again) = load(&with).unwrap();
    let again = format!("{:?}", again.unwrap());
    assert!(again.contains("routes: 1"), "{again}");
    assert!(!again.contains("Zq7-secret"), "{again}");
}

#[test]
fn share_points_kept_routes_at_an_equal_table() {
    let text = format!("{HEAD}  routes:\n    - sni: a.test\n      upstream: x.test:1\n    - sni: b.test\n      upstream: y.test:2\n");
    let (running, _) = load(&text).unwrap();
    // The same file parsed again, as after a change outside the routes.
    let (again, reuse) = load(&text).unwrap();
    let mut reuse = reuse.unwrap();
    let a = |c: &Config| c.gateway.routes.lookup("a.test").unwrap().clone();
    assert!(!Arc::ptr_eq(&a(&running), &a(&again)));
    reuse.share(&running.gateway.routes);
    let fast = reuse.reload_with(&text, &lookup).unwrap();
    assert_eq!(fast.parsed, 0);
    assert!(Arc::ptr_eq(&a(&running), &a(&fast.config)));
}
