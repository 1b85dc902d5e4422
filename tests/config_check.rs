//! `snigate -t`: every file in tests/fixtures/configs/valid passes, and every file in
//! tests/fixtures/configs/invalid fails with the message its first line expects
//! (`# expect: TEXT`). Adding a case needs no code.

mod common;

use std::path::Path;
use std::process::Command;

/// Values the checks put in the environment; no error message may print them.
const SECRETS: [&str; 3] = [
    "pinned.example.test",
    "ABCDEFGHIJKLMNOP",
    "not-a-real-secret",
];

fn check(path: &Path) -> (bool, String) {
    let out = Command::new(common::snigate_bin())
        .arg("-t")
        .arg("-c")
        .arg(path)
        .env("SNIGATE_TEST_DIR", std::env::temp_dir())
        .env("SNIGATE_TEST_HOST", "pinned.example.test")
        // The seed's variables, as the shipped example config uses them.
        .env(
            "PKC_ENDPOINT",
            "pkc-41wq6.eu-west-2.aws.confluent.test:9092",
        )
        .env("CLOUD_KEY", "ABCDEFGHIJKLMNOP")
        .env("CLOUD_SECRET", "not-a-real-secret")
        .env(
            "PKAC_ENDPOINT",
            "https://pkac-41wq6.eu-west-2.aws.confluent.test",
        )
        .env(
            "SCHEMA_REGISTRY_ENDPOINT",
            "https://psrc-41wq6.eu-west-2.aws.confluent.test",
        )
        .env_remove("SNIGATE_TEST_SURELY_UNSET")
        .output()
        .expect("run snigate -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn files(kind: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/configs")
        .join(kind);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures in {}", dir.display());
    v
}

#[test]
fn valid_configs_pass() {
    for path in files("valid") {
        let (ok, text) = check(&path);
        assert!(ok, "{} was refused: {text}", path.display());
        assert!(text.contains("is valid"), "{text}");
    }
}

#[test]
fn invalid_configs_fail_with_a_message_that_names_the_problem() {
    for path in files("invalid") {
        let body = std::fs::read_to_string(&path).unwrap();
        let expect = body
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an `# expect:` first line", path.display()));
        let (ok, text) = check(&path);
        assert!(!ok, "{} was accepted: {text}", path.display());
        for secret in SECRETS {
            assert!(
                !text.contains(secret),
                "{} echoed a value from the environment: {text}",
                path.display()
            );
        }
        // The proxy passwords written in the egress fixtures.
        assert!(
            !text.contains("hunter2"),
            "{} echoed a proxy password: {text}",
            path.display()
        );
        assert!(
            text.contains(expect),
            "{}: want `{expect}` in: {text}",
            path.display()
        );
    }
}

#[test]
fn shipped_configs_pass() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut n = 0;
    for entry in std::fs::read_dir(conf).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let (ok, text) = check(&path);
            assert!(ok, "{} was refused: {text}", path.display());
            n += 1;
        }
    }
    assert!(n > 0);
}

#[test]
fn missing_file_is_a_clear_error() {
    let (ok, text) = check(Path::new("/nonexistent/snigate.yaml"));
    assert!(!ok);
    assert!(text.contains("cannot read config file"), "{text}");
}

/// A proxy password written in the file is accepted, with a warning that says how to fix
/// it and does not show it.
#[test]
fn a_literal_proxy_password_is_accepted_with_a_warning_that_hides_it() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configs/valid/egress.yaml");
    let (ok, text) = check(&path);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: config")
            && text.contains("gateway.egress_proxy: the proxy password is written in the file"),
        "{text}"
    );
    assert!(!text.contains("literal-Pa55"), "{text}");
}
