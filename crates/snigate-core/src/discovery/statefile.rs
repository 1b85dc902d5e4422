//! The state file: the last good discovered routes, saved when they change and loaded at
//! start, so that a gateway restarted while a cluster is unreachable still routes.

use super::state::ClusterRoutes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's content.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateFile {
    /// Discovered routes by cluster name.
    pub clusters: BTreeMap<String, ClusterRoutes>,
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading failed (other than the file not existing).
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The content is not a state file; delete it, and discovery writes a new one.
    #[error("state file {} is unreadable ({message}); delete it and snigate writes a new one after the next refresh", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// serde_yaml's message.
        message: String,
    },
    /// Writing or renaming failed.
    #[error("cannot write state file {}: {source}; check that its directory exists and is writable", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Loads the file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<StateFile, StateFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text).map_err(|e| StateFileError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(source) => Err(StateFileError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Renders the file's text.
pub fn render(state: &StateFile) -> String {
    // Plain data with string keys: serialising it cannot fail.
    let text = serde_yaml::to_string(state).unwrap_or_default();
    format!("# snigate: last good discovered routes; rewritten when they change\n{text}")
}

/// Saves atomically: write a temporary file beside it, then rename.
pub fn save(path: &Path, state: &StateFile) -> Result<(), StateFileError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, render(state))
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| StateFileError::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::super::state::Kind;
    use super::*;

    #[test]
    fn roundtrip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("snigate-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("routes.yaml");
        assert_eq!(load(&path).unwrap(), StateFile::default());
        let mut c = ClusterRoutes::default();
        c.observe(&[("b0.t".into(), 9092, Kind::Broker)], 5, 60);
        let mut s = StateFile::default();
        s.clusters.insert("prod".into(), c);
        save(&path, &s).unwrap();
        assert_eq!(load(&path).unwrap(), s);
        std::fs::write(&path, "clusters: [").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("unreadable"));
        let e = save(&dir.join("missing-dir/routes.yaml"), &s).unwrap_err();
        assert!(e.to_string().contains("cannot write state file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
