//! What ships for deployment, checked the way a platform engineer would: every config
//! under `conf/` passes `snigate -t`, the systemd unit passes `systemd-analyze verify`,
//! every Kubernetes manifest and every rendered overlay passes the API schema, the
//! Dockerfile passes hadolint, and the binary runs the image's default command as the
//! restricted profile runs it (a non-root uid, no capabilities, no new privileges) and
//! routes connections.
//!
//! The checkers come from tests/setup.sh (under `target/tools`). When one is missing the
//! test says so and skips; under `CI=true` it fails instead.

mod common;

use common::lab::*;
use common::*;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A checker on PATH, or where tests/setup.sh installs it; `None` (skip) outside CI.
fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let target = Path::new(snigate_bin())
        .parent()
        .and_then(Path::parent)
        .expect("target dir");
    let installed = ["tools/bin", "tools/venv/bin"]
        .iter()
        .map(|d| target.join(d).join(name));
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    let found = installed.chain(on_path).find(|p| p.is_file());
    // tests/setup.sh can install kustomize's published binary on x86-64 only.
    let installable = name != "kustomize" || std::env::consts::ARCH == "x86_64";
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none() || !installable,
            "{test} needs {name}; tests/setup.sh installs it"
        );
        eprintln!("skipping {test}: {name} is not installed (tests/setup.sh installs it)");
    }
    found
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The environments: one config per file under conf/.
fn environments() -> Vec<(String, PathBuf)> {
    let mut envs: Vec<_> = std::fs::read_dir(repo().join("conf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    envs.sort();
    envs
}

fn yaml_file(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn num(v: &Value, path: &str) -> u64 {
    get(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a number"))
}

fn text<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not text"))
}

/// The documented variables, with placeholder values.
const REQUIRED: [(&str, &str); 3] = [
    (
        "PKC_ENDPOINT",
        "pkc-zz001.eu-west-2.aws.confluent.test:9092",
    ),
    ("CLOUD_KEY", "PLACEHOLDERKEY01"),
    ("CLOUD_SECRET", "placeholder-secret"),
];

fn check_config(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(snigate_bin());
    cmd.args(["-t", "-c"]).arg(path).env_clear();
    cmd.envs(env.iter().copied());
    run(&mut cmd)
}

#[test]
fn each_environment_has_a_config_that_checks_with_secrets_only_from_the_environment() {
    let envs = environments();
    let names: Vec<_> = envs.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["dev", "staging", "prod"] {
        assert!(names.contains(&want), "conf/{want}.yaml is missing");
    }
    for (name, path) in &envs {
        // Only the required variables: the optional endpoints may be left unset.
        let (ok, out) = check_config(path, &REQUIRED);
        assert!(ok, "conf/{name}.yaml with the required variables: {out}");
        assert!(out.contains("1 discovered clusters"), "{out}");
        // Every documented variable, as the image and the manifests set them.
        let mut all = REQUIRED.to_vec();
        all.extend([
            (
                "PKAC_ENDPOINT",
                "https://pkac-zz001.eu-west-2.aws.confluent.test",
            ),
            (
                "SCHEMA_REGISTRY_ENDPOINT",
                "https://psrc-zz001.eu-west-2.aws.confluent.test",
            ),
            ("HTTPS_PORT", "8443"),
            ("ADMIN_ADDRESS", "0.0.0.0"),
            ("ACCESS_LOG_PATH", "/var/log/snigate/access.log"),
        ]);
        let (ok, out) = check_config(path, &all);
        assert!(ok, "conf/{name}.yaml with every variable: {out}");
        // A missing secret is named, and its would-be value is never printed.
        let without: Vec<_> = REQUIRED
            .iter()
            .copied()
            .filter(|(k, _)| *k != "CLOUD_SECRET")
            .collect();
        let (ok, out) = check_config(path, &without);
        assert!(!ok && out.contains("CLOUD_SECRET is not set"), "{out}");
        // A bad value from the environment is named, not printed.
        let mut bad = all.clone();
        bad.retain(|(k, _)| *k != "PKAC_ENDPOINT");
        bad.push(("PKAC_ENDPOINT", "https://not a host!"));
        let (ok, bad_out) = check_config(path, &bad);
        assert!(!ok && bad_out.contains("${PKAC_ENDPOINT}"), "{bad_out}");
        for text in [&out, &bad_out] {
            for secret in ["PLACEHOLDERKEY01", "placeholder-secret", "not a host!"] {
                assert!(
                    !text.contains(secret),
                    "conf/{name}.yaml: printed {secret:?}: {text}"
                );
            }
        }

        let conf = yaml_file(path);
        let clusters = get(&conf, "gateway.clusters").as_sequence().unwrap();
        assert!(!clusters.is_empty());
        for c in clusters {
            for key in ["api_key", "api_secret"] {
                let v = c[key].as_str().unwrap_or_default();
                assert!(
                    v.starts_with("${") && v.ends_with('}') && !v.contains(":-"),
                    "conf/{name}.yaml: {key} must be a ${{VAR}} reference with no default, not {v:?}"
                );
            }
        }
    }
    // The environments differ the way real ones do.
    let dev = yaml_file(&repo().join("conf/dev.yaml"));
    let prod = yaml_file(&repo().join("conf/prod.yaml"));
    for key in [
        "threads",
        "grace_period_seconds",
        "gateway.max_connections",
        "gateway.clusters.0.refresh_interval_secs",
        "gateway.clusters.0.removed_broker_grace_secs",
        "gateway.admin.address",
        "gateway.access_log.format",
    ] {
        assert_ne!(get(&dev, key), get(&prod, key), "dev and prod share {key}");
    }
    assert!(num(&dev, "threads") < num(&prod, "threads"));
    assert!(num(&dev, "gateway.max_connections") < num(&prod, "gateway.max_connections"));
}

#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let test = "systemd_unit_verifies_and_is_hardened";
    let Some(analyze) = tool("systemd-analyze", test) else {
        return;
    };
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/snigate.service")).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let scratch = Scratch::new("unit");
    let copy = scratch.path("snigate.service");
    std::fs::write(&copy, unit.replace("/usr/local/bin/snigate", snigate_bin())).unwrap();
    let (ok, out) = run(Command::new(&analyze).arg("verify").arg(&copy));
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify: {out}");

    let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for line in unit.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = line.split_once('=') {
            keys.entry(k.trim()).or_default().push(v.trim());
        }
    }
    let one = |k: &str| -> &str {
        match keys.get(k).map(Vec::as_slice) {
            Some([v]) => v,
            other => panic!("{k}: expected one value, found {other:?}"),
        }
    };
    // systemd keeps tracking the stable process, which outlives every upgrade.
    assert_eq!(one("Type"), "simple");
    // Should the stable process die, its worker must survive to hand its sockets over.
    assert_eq!(one("KillMode"), "process");
    assert_eq!(one("Restart"), "always");
    assert!(one("ExecReload").contains("snigate upgrade -c /etc/snigate/snigate.yaml"));
    assert_eq!(one("DynamicUser"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("AmbientCapabilities"), "CAP_NET_BIND_SERVICE");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("RuntimeDirectory"), "snigate");
    assert_eq!(one("StateDirectory"), "snigate");
    // The prod config's files live where those directories are, and the limits fit it.
    let prod = yaml_file(&repo().join("conf/prod.yaml"));
    for key in ["pid_file", "upgrade_sock"] {
        assert!(text(&prod, key).starts_with("/run/snigate/"), "{key}");
    }
    assert!(text(&prod, "gateway.state_file").starts_with("/var/lib/snigate/"));
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(
        nofile > 2 * num(&prod, "gateway.max_connections") + 1000,
        "LimitNOFILE {nofile} cannot hold two descriptors per connection"
    );
    // `systemctl reload` is `snigate upgrade`, which systemd times with TimeoutStartSec.
    let reload: u64 = one("TimeoutStartSec").parse().unwrap();
    assert!(
        reload > snigate::supervisor::upgrade::UPGRADE_TIMEOUT.as_secs(),
        "TimeoutStartSec {reload} would cut an upgrade short"
    );
    // The loop guard lists the host's addresses over netlink.
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    for family in ["AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"] {
        assert!(
            families.contains(&family),
            "RestrictAddressFamilies lacks {family}"
        );
    }
    let stop: u64 = one("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > num(&prod, "grace_period_seconds") + num(&prod, "graceful_shutdown_timeout_seconds"),
        "TimeoutStopSec {stop} is shorter than the drain"
    );
}

/// `kubernetes-validate --strict` on `file`; every resource must pass, with no warning.
fn validate_k8s(validate: &Path, file: &Path) {
    let (ok, out) = run(Command::new(validate).arg("--strict").arg(file));
    assert!(
        ok && out.contains("passed") && !out.contains("WARN") && !out.contains("ERROR"),
        "{}: {out}",
        file.display()
    );
}

/// The Prometheus Operator's kinds, which kubernetes-validate has no schema for: it warns,
/// and [`monitoring_component_renders_from_the_same_files`] checks them instead.
const OPERATOR_KINDS: [&str; 2] = ["ServiceMonitor", "PrometheusRule"];

/// As [`validate_k8s`], but the only warnings allowed are the missing schemas of the
/// Prometheus Operator's kinds; every other resource must pass.
fn validate_k8s_with_operator_kinds(validate: &Path, file: &Path) {
    let (ok, out) = run(Command::new(validate).arg("--strict").arg(file));
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("ERROR"))
        .filter(|l| {
            !OPERATOR_KINDS.iter().any(|k| {
                l.contains(&format!(
                    "Couldn't find schema for kind {k} with api version monitoring.coreos.com/v1"
                ))
            })
        })
        .collect();
    assert!(ok && unexpected.is_empty(), "{}: {out}", file.display());
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml") {
            out.push(p);
        }
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

fn configmap<'a>(docs: &'a [Value], prefix: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == "ConfigMap" && text(d, "metadata.name").starts_with(prefix))
        .unwrap_or_else(|| panic!("no ConfigMap {prefix}…"))
}

#[test]
fn kubernetes_manifests_and_overlays_validate() {
    let test = "kubernetes_manifests_and_overlays_validate";
    let (Some(validate), Some(kustomize)) =
        (tool("kubernetes-validate", test), tool("kustomize", test))
    else {
        return;
    };
    let k8s = repo().join("deploy/kubernetes");
    let mut files = Vec::new();
    yaml_files(&k8s, &mut files);
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy();
        // Kustomizations are kustomize's, not the API's; snigate.yaml is a gateway config.
        if name == "kustomization.yaml" || name == "snigate.yaml" {
            continue;
        }
        if f.components().any(|c| c.as_os_str() == "components") {
            validate_k8s_with_operator_kinds(&validate, f);
        } else {
            validate_k8s(&validate, f);
        }
    }

    let scratch = Scratch::new("k8s");
    for (env, conf_path) in environments() {
        let overlay = k8s.join("overlays").join(&env);
        assert!(overlay.is_dir(), "no overlay for conf/{env}.yaml");
        let out = Command::new(&kustomize)
            .arg("build")
            .arg(&overlay)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kustomize build {env}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = scratch.path(&format!("{env}.yaml"));
        std::fs::write(&rendered, &out.stdout).unwrap();
        validate_k8s(&validate, &rendered);

        let text_out = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text_out)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
        let conf_text = std::fs::read_to_string(&conf_path).unwrap();
        let conf: Value = serde_yaml::from_str(&conf_text).unwrap();

        // The ConfigMap carries conf/<env>.yaml, byte for byte.
        let config = configmap(&docs, "snigate-config");
        assert_eq!(
            config["data"]["snigate.yaml"].as_str().unwrap(),
            conf_text,
            "overlays/{env}/snigate.yaml differs from conf/{env}.yaml; copy it over"
        );

        let deploy = find(&docs, "Deployment");
        let pod = get(deploy, "spec.template.spec");
        let c = get(pod, "containers.0");
        assert_eq!(
            get(c, "args"),
            &serde_yaml::from_str::<Value>("[-c, /etc/snigate/snigate.yaml]").unwrap()
        );

        // The restricted profile.
        assert_eq!(get(pod, "securityContext.runAsNonRoot"), &Value::Bool(true));
        assert_eq!(
            text(pod, "securityContext.seccompProfile.type"),
            "RuntimeDefault"
        );
        let sc = get(c, "securityContext");
        assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
        assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
        assert_eq!(get(sc, "capabilities.drop.0"), "ALL");
        assert!(sc["capabilities"].get("add").is_none());

        // Writable volumes where the config keeps its files.
        let mounts = get(c, "volumeMounts").as_sequence().unwrap();
        let writable = |file: &str| {
            mounts.iter().any(|m| {
                file.starts_with(&format!("{}/", text(m, "mountPath")))
                    && m["readOnly"] != Value::Bool(true)
            })
        };
        for key in ["pid_file", "upgrade_sock", "gateway.state_file"] {
            assert!(
                writable(text(&conf, key)),
                "{env}: {key} is not on a writable volume"
            );
        }

        // The container's environment: literal values, the endpoints, placeholder secrets.
        let mut env_vars: Vec<(String, String)> = Vec::new();
        for e in get(c, "env").as_sequence().unwrap() {
            let name = text(e, "name").to_owned();
            match e.get("value") {
                Some(v) => env_vars.push((name, v.as_str().unwrap().to_owned())),
                None => {
                    assert_eq!(
                        text(e, "valueFrom.secretKeyRef.name"),
                        "snigate-credentials",
                        "{name} does not come from the Secret"
                    );
                    env_vars.push((name, "placeholder".to_owned()));
                }
            }
        }
        for key in ["CLOUD_KEY", "CLOUD_SECRET"] {
            assert!(
                env_vars.iter().any(|(k, _)| k == key),
                "{env}: {key} is not set"
            );
        }
        let endpoints_ref = text(c, "envFrom.0.configMapRef.name");
        let endpoints = docs
            .iter()
            .find(|d| d["kind"] == "ConfigMap" && text(d, "metadata.name") == endpoints_ref)
            .unwrap_or_else(|| panic!("{env}: no ConfigMap {endpoints_ref}"));
        for (k, v) in get(endpoints, "data").as_mapping().unwrap() {
            let v = v
                .as_str()
                .unwrap()
                .replace(".confluent.cloud", ".confluent.test");
            env_vars.push((k.as_str().unwrap().to_owned(), v));
        }
        // With that environment the ConfigMap's config passes, and its admin endpoint is
        // one the kubelet can reach.
        let pod_conf = scratch.path(&format!("{env}-pod.yaml"));
        std::fs::write(&pod_conf, config["data"]["snigate.yaml"].as_str().unwrap()).unwrap();
        let (ok, out) = run(Command::new(snigate_bin())
            .args(["-t", "-c"])
            .arg(&pod_conf)
            .env_clear()
            .envs(env_vars.iter().map(|(k, v)| (k, v))));
        assert!(ok, "{env}: the pod's config does not pass: {out}");
        let lookup = |name: &str| {
            env_vars
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let admin = text(&conf, "gateway.admin.address");
        let admin = snigate_core::config::env::expand_with(admin, &lookup)
            .unwrap()
            .value
            .into_owned();
        assert_eq!(
            admin, "0.0.0.0:9080",
            "{env}: probes cannot reach the admin endpoint"
        );
        let port = |name: &str| {
            get(c, "ports")
                .as_sequence()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| num(p, "containerPort"))
                .unwrap_or_else(|| panic!("no container port {name}"))
        };
        assert_eq!(port("admin"), 9080);
        assert_eq!(text(c, "readinessProbe.httpGet.path"), "/ready");
        assert_eq!(text(c, "livenessProbe.httpGet.path"), "/health");
        assert_eq!(text(c, "readinessProbe.httpGet.port"), "admin");
        assert_eq!(text(c, "livenessProbe.httpGet.port"), "admin");
        let https = snigate_core::config::env::expand_with(
            text(&conf, "gateway.listeners.1.address"),
            &lookup,
        )
        .unwrap()
        .value
        .into_owned();
        assert_eq!(https, format!("0.0.0.0:{}", port("https")));
        let annotations = get(deploy, "spec.template.metadata.annotations");
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_eq!(annotations["prometheus.io/port"], "9080");

        // Kubernetes waits out the preStop hook and the whole drain before SIGKILL.
        let pre_stop: u64 = get(c, "lifecycle.preStop.exec.command")
            .as_sequence()
            .unwrap()
            .last()
            .and_then(|s| s.as_str()?.parse().ok())
            .unwrap_or_else(|| panic!("{env}: preStop is not `sleep N`"));
        let drain =
            num(&conf, "grace_period_seconds") + num(&conf, "graceful_shutdown_timeout_seconds");
        let term = num(pod, "terminationGracePeriodSeconds");
        assert!(
            term > pre_stop + drain,
            "{env}: terminationGracePeriodSeconds {term} <= preStop {pre_stop} + drain {drain}"
        );

        // The load balancer passes TCP through to the named ports; the PDB and the Service
        // select the Deployment's pods.
        let svc = find(&docs, "Service");
        assert_eq!(text(svc, "spec.type"), "LoadBalancer");
        let nlb = |key: &str| {
            svc["metadata"]["annotations"]
                [format!("service.beta.kubernetes.io/aws-load-balancer-{key}").as_str()]
            .as_str()
            .unwrap_or_else(|| panic!("{env}: no aws-load-balancer-{key} annotation"))
            .to_owned()
        };
        assert_eq!(nlb("type"), "external");
        assert_eq!(nlb("nlb-target-type"), "ip");
        assert_eq!(nlb("healthcheck-protocol"), "HTTP");
        assert_eq!(nlb("healthcheck-path"), "/ready");
        assert_eq!(nlb("healthcheck-port"), port("admin").to_string());
        let delay: u64 = nlb("target-group-attributes")
            .split(',')
            .find_map(|kv| kv.strip_prefix("deregistration_delay.timeout_seconds="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{env}: no deregistration delay"));
        assert!(
            delay >= pre_stop + drain,
            "{env}: the NLB cuts connections after {delay} s, before the drain ends"
        );
        let image = text(c, "image");
        assert!(
            image.contains('/') && !image.ends_with(":latest"),
            "{env}: image {image} names no registry or a moving tag"
        );
        for p in get(svc, "spec.ports").as_sequence().unwrap() {
            port(text(p, "targetPort"));
        }
        let labels = get(deploy, "spec.template.metadata.labels");
        for selector in [
            get(svc, "spec.selector"),
            get(
                find(&docs, "PodDisruptionBudget"),
                "spec.selector.matchLabels",
            ),
        ] {
            for (k, v) in selector.as_mapping().unwrap() {
                assert_eq!(&labels[k.as_str().unwrap()], v, "{env}: selector {k:?}");
            }
        }
    }
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = tool("hadolint", "dockerfile_passes_hadolint") else {
        return;
    };
    let (ok, out) = run(Command::new(hadolint).arg(repo().join("Dockerfile")));
    assert!(ok && out.trim().is_empty(), "hadolint: {out}");
}

/// What the image's last stage declares: its environment, user and default command.
struct Image {
    env: Vec<(String, String)>,
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    dirs: Vec<String>,
}

fn image() -> Image {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let last = joined.rsplit("\nFROM ").next().unwrap();
    let mut image = Image {
        env: Vec::new(),
        user: String::new(),
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        dirs: Vec::new(),
    };
    let json = |s: &str| -> Vec<String> { serde_json::from_str(s.trim()).unwrap() };
    for line in last.lines() {
        let (ins, rest) = line.split_once(' ').unwrap_or((line, ""));
        match ins {
            "ENV" => {
                for kv in rest.split_whitespace() {
                    let (k, v) = kv.split_once('=').unwrap();
                    image.env.push((k.to_owned(), v.to_owned()));
                }
            }
            "USER" => image.user = rest.trim().to_owned(),
            "ENTRYPOINT" => image.entrypoint = json(rest),
            "CMD" => image.cmd = json(rest),
            "RUN" => {
                if let Some(i) = rest.find("install -d") {
                    image.dirs.extend(
                        rest[i..]
                            .split_whitespace()
                            .take_while(|w| *w != "&&")
                            .filter(|w| w.starts_with('/'))
                            .map(str::to_owned),
                    );
                }
            }
            _ => {}
        }
    }
    image
}

/// Waits until `url` answers 200 from the client namespace, failing at once if the
/// gateway has exited.
fn wait_ready_from(lab: &Lab, pid: u32, url: &str) {
    let start = Instant::now();
    loop {
        let (ok, _) = lab.run(&lab.cl, 5, &["curl", "-sf", "-o", "/dev/null", url]);
        if ok {
            return;
        }
        let log = || std::fs::read_to_string(lab.path("snigate.log")).unwrap_or_default();
        assert!(
            pid_alive(pid),
            "snigate exited before it was ready:\n{}",
            log()
        );
        assert!(
            start.elapsed() < PATIENCE,
            "{url} never answered 200:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `Name:\tvalue` lines of /proc/PID/status.
fn proc_status(pid: u32) -> BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn netns_image_default_command_runs_restricted_and_routes() {
    if !root_or_skip("netns_image_default_command_runs_restricted_and_routes") {
        return;
    }
    let image = image();
    let uid = image.user.split(':').next().unwrap().to_owned();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "USER {uid} is not a non-root uid"
    );
    for dir in ["/run/snigate", "/var/lib/snigate"] {
        assert!(
            image.dirs.iter().any(|d| d == dir),
            "the image does not create {dir}"
        );
    }
    // The image's command, with its config taken from where the Dockerfile copies it.
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let (config_src, config_dst) = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("COPY conf/"))
        .and_then(|l| l.split_once(' '))
        .map(|(f, dst)| (repo().join("conf").join(f), dst.trim().to_owned()))
        .expect("the Dockerfile copies a config from conf/");
    assert_eq!(image.entrypoint, ["/usr/local/bin/snigate"]);
    assert_eq!(
        image.cmd,
        ["-c", config_dst.as_str()],
        "CMD reads another file"
    );

    let mut lab = Lab::with_gateway_ns("restricted");
    lab.start_cloud();
    let ca = lab.cloud_dir().join("ca.pem");
    // The pod's filesystem, in a mount namespace of the gateway's own: the image's
    // directories on tmpfs, owned by its user; binary and config in a directory it can
    // read; everything else read-only, as with readOnlyRootFilesystem.
    let script = format!(
        "set -e
mount -t tmpfs -o mode=0755 snigate-run /run
mount -t tmpfs -o mode=0755 snigate-lib /var/lib
install -d -o {uid} -g {uid} -m 0750 /run/snigate /var/lib/snigate
install -d -m 0755 /run/image
install -m 0755 {bin} /run/image/snigate
install -m 0644 {conf} /run/image/snigate.yaml
install -m 0644 {ca} /run/image/ca.pem
mount -o remount,bind,ro /
exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all --ambient-caps=-all \
  --bounding-set=-all --no-new-privs /run/image/snigate -c /run/image/snigate.yaml",
        bin = snigate_bin(),
        conf = config_src.display(),
        ca = ca.display(),
    );
    // Only the image's environment and the documented variables; SSL_CERT_FILE trusts the
    // simulated cloud's CA, as it would a private one.
    let mut env: Vec<(String, String)> = image.env.clone();
    env.extend(
        [
            ("PKC_ENDPOINT", format!("{BOOTSTRAP}:9092")),
            ("CLOUD_KEY", "sim-key".to_owned()),
            ("CLOUD_SECRET", "sim-secret".to_owned()),
            ("PKAC_ENDPOINT", format!("https://pkac-sim01.{DOMAIN}")),
            (
                "SCHEMA_REGISTRY_ENDPOINT",
                format!("https://psrc-sim01.{DOMAIN}"),
            ),
            ("SSL_CERT_FILE", "/run/image/ca.pem".to_owned()),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let log = lab.path("snigate.log");
    let mut cmd = lab.cmd(&lab.gw.clone(), &["sh", "-c", &script]);
    cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    let child = cmd
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    lab.procs.push(Proc {
        child,
        what: "snigate (restricted)".to_owned(),
    });

    // The kubelet's probe, from another host.
    wait_ready_from(&lab, pid, &format!("http://{GATEWAY_IP}:9080/ready"));
    let (ok, out) = lab.run(
        &lab.cl,
        5,
        &["curl", "-sf", &format!("http://{GATEWAY_IP}:9080/health")],
    );
    assert!(ok, "{out}");

    // Both processes run as the image user with no capability and no way to gain one.
    let worker = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .is_ok_and(|s| s.lines().any(|l| l == format!("PPid:\t{pid}")))
        })
        .expect("the stable process has a worker");
    for p in [pid, worker] {
        let st = proc_status(p);
        assert_eq!(
            st["Uid"].split_whitespace().collect::<Vec<_>>(),
            [uid.as_str(); 4]
        );
        for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(st[cap], "0000000000000000", "pid {p} {cap}");
        }
        assert_eq!(st["NoNewPrivs"], "1");
    }

    // Kafka through 9092: the broker's own certificate, and the brokers listed by name.
    let (ok, out) = lab.tls_verifies(&broker(2));
    assert!(ok, "{out}");
    let (ok, out) = lab.kcat_list();
    assert!(ok, "{out}");
    for i in 0..3 {
        assert!(out.contains(&broker(i)), "broker {i} missing:\n{out}");
    }
    // Schema Registry through the unprivileged HTTPS port.
    let https_port = image
        .env
        .iter()
        .find(|(k, _)| k == "HTTPS_PORT")
        .map(|(_, v)| v.clone())
        .expect("the image sets HTTPS_PORT");
    let sr = format!("psrc-sim01.{DOMAIN}");
    let (ok, out) = lab.run(
        &lab.cl,
        15,
        &[
            "curl",
            "-sS",
            "--fail",
            "--cacert",
            &ca.display().to_string(),
            "-u",
            "sim-key:sim-secret",
            "--resolve",
            &format!("{sr}:{https_port}:{GATEWAY_IP}"),
            &format!("https://{sr}:{https_port}/subjects"),
        ],
    );
    assert!(ok && out.contains("orders-value"), "{out}");

    // The state file, written by the unprivileged worker where the image keeps it.
    let state = format!("/proc/{pid}/root/var/lib/snigate/discovered.yaml");
    let start = Instant::now();
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains(&broker(0))) {
        assert!(
            start.elapsed() < PATIENCE,
            "no state file at /var/lib/snigate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Access lines: JSON on standard output, one object a line.
    let out_path = log.with_extension("out");
    let start = Instant::now();
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect();
        if lines
            .iter()
            .any(|l| l["sni"] == sr && l["listener"] == "https" && l["outcome"] == "ok")
        {
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "no access line for {sr}: {lines:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGTERM, as the kubelet sends after preStop: a clean exit.
    kill("TERM", pid);
    let (ok, out) = lab.wait_exit(lab.procs.len() - 1, &log, PATIENCE);
    assert!(ok, "{out}");
}

/// The alert rules pass `promtool check rules`, their unit tests (each alert fires on a
/// series that should fire it and stays silent on one that should not) pass `promtool test
/// rules`, and every metric they read is one snigate exports.
#[test]
fn alert_rules_pass_promtool_and_read_only_exported_metrics() {
    let Some(promtool) = tool(
        "promtool",
        "alert_rules_pass_promtool_and_read_only_exported_metrics",
    ) else {
        return;
    };
    let dir = repo().join("deploy/monitoring");
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts_test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exported = std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap();
    let rules: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("alerts.yaml")).unwrap()).unwrap();
    let mut read = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            for name in expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("snigate_"))
            {
                read += 1;
                assert!(
                    exported.contains(&format!("\"{name}\"")),
                    "{} reads {name}, which snigate does not export",
                    rule["alert"].as_str().unwrap_or("a rule")
                );
            }
        }
    }
    assert!(read > 0, "the rules read no snigate metric");
}

/// `deploy/kubernetes/components/monitoring` added to each overlay: it renders, its plain
/// resources pass the API schema, its PrometheusRule holds exactly the groups of
/// `deploy/monitoring/alerts.yaml`, its dashboard ConfigMap holds
/// `deploy/monitoring/grafana-dashboard.json` byte for byte, and its ServiceMonitor
/// scrapes the admin port through a ClusterIP Service, never the load balancer.
#[test]
fn monitoring_component_renders_from_the_same_files() {
    let test = "monitoring_component_renders_from_the_same_files";
    let (Some(validate), Some(kustomize)) =
        (tool("kubernetes-validate", test), tool("kustomize", test))
    else {
        return;
    };
    let monitoring = repo().join("deploy/monitoring");
    let alerts: Value =
        serde_yaml::from_str(&std::fs::read_to_string(monitoring.join("alerts.yaml")).unwrap())
            .unwrap();
    let dashboard = std::fs::read_to_string(monitoring.join("grafana-dashboard.json")).unwrap();
    let scratch = Scratch::new("k8s-monitoring");
    // kustomize takes relative paths only.
    let depth = scratch.dir.components().count() - 1;
    let up = "../".repeat(depth);
    let repo_rel = repo().strip_prefix("/").unwrap().display().to_string();
    for (env, _) in environments() {
        let dir = scratch.path(&env);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../{up}{repo_rel}/deploy/kubernetes/overlays/{env}\ncomponents:\n  - ../{up}{repo_rel}/deploy/kubernetes/components/monitoring\n"
            ),
        )
        .unwrap();
        let out = Command::new(&kustomize)
            .arg("build")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kustomize build {env} with the monitoring component: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = scratch.path(&format!("{env}-monitoring.yaml"));
        std::fs::write(&rendered, &out.stdout).unwrap();
        validate_k8s_with_operator_kinds(&validate, &rendered);
        let text_out = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text_out)
            .map(|d| Value::deserialize(d).unwrap())
            .collect();

        let rule = find(&docs, "PrometheusRule");
        assert_eq!(
            get(rule, "spec.groups"),
            &alerts["groups"],
            "components/monitoring/prometheusrule.yaml differs from deploy/monitoring/alerts.yaml; copy its groups over"
        );
        let board = configmap(&docs, "snigate-grafana-dashboard");
        assert_eq!(
            board["data"]["grafana-dashboard.json"].as_str().unwrap(),
            dashboard,
            "components/monitoring/grafana-dashboard.json differs from deploy/monitoring/grafana-dashboard.json; copy it over"
        );
        assert_eq!(text(board, "metadata.labels.grafana_dashboard"), "1");

        let services: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Service").collect();
        let admin = services
            .iter()
            .find(|s| text(s, "metadata.name") == "snigate-admin")
            .expect("the admin Service");
        assert_eq!(text(admin, "spec.type"), "ClusterIP");
        for s in &services {
            let ports = get(s, "spec.ports").as_sequence().unwrap();
            let has_admin = ports.iter().any(|p| p["name"] == "admin");
            assert_eq!(
                has_admin,
                text(s, "metadata.name") == "snigate-admin",
                "only the ClusterIP admin Service carries the admin port"
            );
        }
        let monitor = find(&docs, "ServiceMonitor");
        assert_eq!(text(monitor, "spec.endpoints.0.port"), "admin");
        assert_eq!(text(monitor, "spec.endpoints.0.path"), "/metrics");
        let wanted = get(monitor, "spec.selector.matchLabels")
            .as_mapping()
            .unwrap();
        let labels = get(admin, "metadata.labels").as_mapping().unwrap();
        for (k, v) in wanted {
            assert_eq!(
                labels.get(k),
                Some(v),
                "the ServiceMonitor does not select the admin Service"
            );
        }
        // The job label the alert rules read (`up{job="snigate"}`).
        let job_label = text(monitor, "spec.jobLabel");
        assert_eq!(
            labels.get(job_label).and_then(Value::as_str),
            Some("snigate")
        );
        // The admin Service reaches the pods' admin port.
        let deploy = find(&docs, "Deployment");
        let ports = get(deploy, "spec.template.spec.containers.0.ports")
            .as_sequence()
            .unwrap();
        let target = text(admin, "spec.ports.0.targetPort");
        assert!(ports.iter().any(|p| p["name"] == target));
    }
}
