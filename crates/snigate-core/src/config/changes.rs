//! What a config reload changes, and which of it can be applied in place.
//!
//! Rules:
//! 1. Static routes, per-connection limits and timeouts, and listener fallbacks apply to
//!    new connections at once; open connections keep what they started with.
//! 2. Listeners (names, addresses, how many), the admin endpoint, clusters, the state file,
//!    the reload mode and Pingora's settings need a new process: `snigate upgrade`.

use super::Config;

/// The difference between the running config and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// The static routes differ.
    pub routes: bool,
    /// Deadlines, timeouts or the connection limit differ.
    pub limits: bool,
    /// Listeners whose fallback differs.
    pub fallbacks: Vec<String>,
    /// Keys that changed but need an upgrade to take effect.
    pub need_upgrade: Vec<&'static str>,
}

impl Changes {
    /// True when the new config is the running one.
    pub fn is_empty(&self) -> bool {
        !self.routes && !self.limits && self.fallbacks.is_empty() && self.need_upgrade.is_empty()
    }

    /// True when something can be applied in place.
    pub fn applies_live(&self) -> bool {
        self.routes || self.limits || !self.fallbacks.is_empty()
    }
}

/// Compares the running config with a new one.
pub fn changes(old: &Config, new: &Config) -> Changes {
    let (o, n) = (&old.gateway, &new.gateway);
    let mut c = Changes {
        routes: !o.routes.same_routes(&n.routes),
        limits: o.limits != n.limits,
        ..Changes::default()
    };
    let same_listeners = o.listeners.len() == n.listeners.len()
        && o.listeners.iter().zip(&n.listeners).all(|(a, b)| {
            a.name == b.name
                && a.address == b.address
                && a.proxy_protocol == b.proxy_protocol
                && a.allow == b.allow
        });
    if same_listeners {
        c.fallbacks = o
            .listeners
            .iter()
            .zip(&n.listeners)
            .filter(|(a, b)| {
                a.fallback != b.fallback || a.fallback_send_proxy != b.fallback_send_proxy
            })
            .map(|(_, b)| b.name.clone())
            .collect();
    } else {
        c.need_upgrade.push("gateway.listeners");
    }
    if o.admin != n.admin {
        c.need_upgrade.push("gateway.admin");
    }
    if o.clusters != n.clusters {
        c.need_upgrade.push("gateway.clusters");
    }
    if o.state_file != n.state_file {
        c.need_upgrade.push("gateway.state_file");
    }
    if o.reload != n.reload {
        c.need_upgrade.push("gateway.reload");
    }
    if o.max_routes != n.max_routes {
        c.need_upgrade.push("gateway.max_routes");
    }
    if o.egress_proxy != n.egress_proxy {
        // Discovery's tunnels are opened through it when the worker starts.
        c.need_upgrade.push("gateway.egress_proxy");
    }
    if o.access_log != n.access_log {
        c.need_upgrade.push("gateway.access_log");
    }
    if old.server != new.server {
        c.need_upgrade.push("Pingora's server settings");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "threads: 2
gateway:
  listeners:
    - name: kafka
      address: 127.0.0.1:9092
  routes:
    - sni: a.test
      upstream: a.test:9092
";

    fn diff(new: &str) -> Changes {
        let old = Config::from_yaml_with(BASE, &|_| None).unwrap();
        let new = Config::from_yaml_with(new, &|_| None).unwrap();
        changes(&old, &new)
    }

    #[test]
    fn table_of_changes() {
        let route = "    - sni: b.test\n      upstream: b.test:9092\n";
        let cases: Vec<(String, Changes)> = vec![
            (BASE.to_owned(), Changes::default()),
            (
                format!("{BASE}{route}"),
                Changes {
                    routes: true,
                    ..Changes::default()
                },
            ),
            (
                BASE.replace("a.test:9092", "a.test:9093"),
                Changes {
                    routes: true,
                    ..Changes::default()
                },
            ),
            (
                format!("{BASE}  connect_timeout_ms: 100\n"),
                Changes {
                    limits: true,
                    ..Changes::default()
                },
            ),
            (
                BASE.replace(
                    "9092\n  routes",
                    "9092\n      fallback: f.test:443\n  routes",
                ),
                Changes {
                    fallbacks: vec!["kafka".into()],
                    ..Changes::default()
                },
            ),
            (
                BASE.replace("127.0.0.1:9092", "127.0.0.1:9093"),
                Changes {
                    need_upgrade: vec!["gateway.listeners"],
                    ..Changes::default()
                },
            ),
            (
                BASE.replace("threads: 2", "threads: 3"),
                Changes {
                    need_upgrade: vec!["Pingora's server settings"],
                    ..Changes::default()
                },
            ),
            (
                format!("{BASE}  admin:\n    address: 127.0.0.1:9080\n"),
                Changes {
                    need_upgrade: vec!["gateway.admin"],
                    ..Changes::default()
                },
            ),
        ];
        for (new, want) in cases {
            assert_eq!(diff(&new), want, "{new}");
        }
        assert!(diff(BASE).is_empty());
        assert!(diff(&format!("{BASE}  max_connections: 5\n")).applies_live());
    }
}
