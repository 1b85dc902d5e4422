//! The state file: the last good discovered routes, saved after each change and loaded at
//! start, so that a gateway restarted while a cluster is unreachable still routes.

use super::state::ClusterRoutes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file's content.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct StateFile {
    /// Discovered routes by cluster name.
    pub clusters: BTreeMap<String, ClusterRoutes>,
}

/// Loads the file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<StateFile, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_yaml::from_str(&text)
            .map_err(|e| format!("state file {} is unreadable: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile::default()),
        Err(e) => Err(format!("cannot read state file {}: {e}", path.display())),
    }
}

/// Saves atomically: write a temporary file beside it, then rename.
pub fn save(path: &Path, state: &StateFile) -> Result<(), String> {
    let text = serde_yaml::to_string(state).map_err(|e| e.to_string())?;
    let body =
        format!("# snigate: last good discovered routes; rewritten after each change\n{text}");
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write state file {}: {e}", path.display()))
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
        assert!(load(&path).unwrap_err().contains("unreadable"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
