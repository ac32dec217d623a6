//! The proxy's local cache of the fleet's route state: written whenever
//! the rows read from the store change, read at start when the store
//! cannot be reached, so holds and run-time changes survive a store
//! outage and a restart during one.

use std::path::Path;

use serde::{Deserialize, Serialize};
use strangler_state::route_state::LiveRoute;

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    saved_at_ms: i64,
    routes: Vec<LiveRoute>,
}

/// Saves `routes` to `path` (write to a temporary file, then rename, so a
/// crash never leaves half a cache).
pub fn write(path: &Path, routes: &[LiveRoute]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let body = serde_json::to_vec_pretty(&CacheFile {
        saved_at_ms: strangler_state::store::now_ms(),
        routes: routes.to_vec(),
    })
    .map_err(std::io::Error::other)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, path)
}

/// The cached routes and when they were saved (ms since the epoch).
pub fn read(path: &Path) -> Result<(Vec<LiveRoute>, i64), String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: CacheFile = serde_json::from_slice(&text)
        .map_err(|e| format!("{}: not a route-state cache: {e}", path.display()))?;
    Ok((file.routes, file.saved_at_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strangler_config::Stage;
    use strangler_state::route_state::{Origin, Target};

    #[test]
    fn a_cache_reads_back_what_was_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/cache.json");
        let rows = vec![LiveRoute {
            route: "p".into(),
            declared: Target {
                stage: Stage::Canary,
                percent: 50.0,
            },
            stage: Stage::Legacy,
            percent: 0.0,
            origin: Origin::Hold,
            why: "rolled back by ops: incident".into(),
            revision: "abc".into(),
            updated_at_ms: 7,
        }];
        write(&path, &rows).expect("write");
        assert_eq!(read(&path).expect("read").0, rows);
        std::fs::write(&path, "{").expect("corrupt");
        assert!(read(&path).unwrap_err().contains("not a route-state cache"));
    }
}
