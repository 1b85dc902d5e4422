//! Loading the config file: the core checks the `gateway:` section and expands `${ENV}`;
//! this checks the top-level keys against Pingora's `ServerConf` and fills in snigate's
//! defaults for the pid file and the upgrade socket.

use pingora_core::server::configuration::ServerConf;
use serde_yaml::{Mapping, Value};
pub use snigate_core::config::reuse::Reuse;
pub use snigate_core::config::{ConfigError, GatewayConfig, Reusable};

/// Default pid file, unless `pid_file` is set.
pub const DEFAULT_PID_FILE: &str = "/tmp/snigate.pid";
/// Default `grace_period_seconds` (Pingora's).
pub const DEFAULT_GRACE_SECS: u64 = 300;
/// Default upgrade socket, unless `upgrade_sock` is set.
pub const DEFAULT_UPGRADE_SOCK: &str = "/tmp/snigate_upgrade.sock";

/// A validated config: Pingora's part and the gateway's.
#[derive(Debug)]
pub struct Config {
    /// Pingora's server settings.
    pub server: ServerConf,
    /// The same settings as written (after `${ENV}` expansion), to compare on reload.
    pub server_keys: Mapping,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// What a reload of the same file can reuse, or why nothing: only when loaded for a
    /// worker.
    pub reuse: Option<Reusable>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &str) -> Result<Config, ConfigError> {
        Config::from_core(snigate_core::config::Config::load(path)?)
    }

    /// Like [`Config::load`], but a credential whose variable is unset reads as empty: for
    /// commands that never contact a cluster.
    pub fn load_without_secrets(path: &str) -> Result<Config, ConfigError> {
        Config::from_core(snigate_core::config::Config::load_without_secrets(path)?)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        Config::from_core(snigate_core::config::Config::from_yaml(text)?)
    }

    /// As [`Config::load`], keeping what a reload of the same file can reuse: for a worker.
    pub fn load_reusable(path: &str) -> Result<Config, ConfigError> {
        let text = snigate_core::config::read(path)?;
        Config::from_yaml_reusable(&text)
    }

    /// As [`Config::from_yaml`], keeping what a reload of the same text can reuse.
    pub fn from_yaml_reusable(text: &str) -> Result<Config, ConfigError> {
        let (core, reuse) = snigate_core::config::Config::from_yaml_reusable(text)?;
        let mut config = Config::from_core(core)?;
        config.reuse = Some(reuse);
        Ok(config)
    }

    /// The config as the core sees it, and what a reload can reuse, taking them apart.
    pub fn into_core(self) -> (snigate_core::config::Config, Option<Reusable>) {
        let core = snigate_core::config::Config {
            server: self.server_keys,
            gateway: self.gateway,
        };
        (core, self.reuse)
    }

    fn from_core(core: snigate_core::config::Config) -> Result<Config, ConfigError> {
        Ok(Config {
            server: server_conf(&core.server)?,
            server_keys: core.server,
            gateway: core.gateway,
            reuse: None,
        })
    }

    /// The config as the core sees it, to compare with another.
    pub fn core(&self) -> snigate_core::config::Config {
        snigate_core::config::Config {
            server: self.server_keys.clone(),
            gateway: self.gateway.clone(),
        }
    }

    /// How long connections may drain after the worker stops accepting.
    pub fn grace_period(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.server
                .grace_period_seconds
                .unwrap_or(DEFAULT_GRACE_SECS),
        )
    }
}

/// Pingora's settings: each key must be one of `ServerConf`'s fields and is checked on its
/// own, so that an error names it.
fn server_conf(keys: &Mapping) -> Result<ServerConf, ConfigError> {
    let known = serde_yaml::to_value(ServerConf::default())
        .ok()
        .and_then(|v| v.as_mapping().cloned())
        .unwrap_or_default();
    let mut conf = Mapping::new();
    conf.insert("pid_file".into(), DEFAULT_PID_FILE.into());
    conf.insert("upgrade_sock".into(), DEFAULT_UPGRADE_SOCK.into());
    for (k, v) in keys {
        let key = k.as_str().unwrap_or_default().to_owned();
        if !known.contains_key(k) {
            return Err(ConfigError::UnknownServerKey { key });
        }
        let mut single = Mapping::new();
        single.insert(k.clone(), v.clone());
        serde_yaml::from_value::<ServerConf>(Value::Mapping(single)).map_err(|e| {
            ConfigError::Server {
                key: key.clone(),
                message: e.to_string(),
            }
        })?;
        conf.insert(k.clone(), v.clone());
    }
    let whole = |e: &dyn std::fmt::Display| ConfigError::Server {
        key: "(server)".into(),
        message: e.to_string(),
    };
    let parsed: ServerConf = serde_yaml::from_value(Value::Mapping(conf)).map_err(|e| whole(&e))?;
    parsed.validate().map_err(|e| whole(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATEWAY: &str =
        "gateway:\n  listeners:\n    - name: kafka\n      address: 127.0.0.1:9092\n";

    #[test]
    fn pingora_keys_are_checked_one_by_one() {
        let c = Config::from_yaml(&format!("threads: 3\n{GATEWAY}")).unwrap();
        assert_eq!(c.server.threads, 3);
        assert_eq!(c.server.pid_file, DEFAULT_PID_FILE);
        let e = Config::from_yaml(&format!("thread: 2\n{GATEWAY}"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown key `thread`: not a Pingora server setting"),
            "{e}"
        );
        let e = Config::from_yaml(&format!("threads: many\n{GATEWAY}"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("server setting `threads`: "), "{e}");
    }
}
