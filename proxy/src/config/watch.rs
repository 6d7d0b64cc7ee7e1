//! The config file as a source: load it, then watch it and reload on every change.
//! The parent directory is watched (editors and Kubernetes replace files by rename), with a
//! slow poll as a safety net where file events are not delivered.

use super::{Defaults, load, resolve::NoSecrets};
use crate::{catalog::Catalog, state::AppState};
use notify::{RecursiveMode, Watcher};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tokio::sync::mpsc;

/// How often the file is re-read even without a file event.
const POLL: Duration = Duration::from_secs(2);
/// Events within this window are one change (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(50);
/// The second look after a change event.
const RECHECK: Duration = Duration::from_millis(150);

pub struct FileSource {
    pub path: PathBuf,
    pub defaults: Defaults,
    pub catalog: Arc<Catalog>,
}

impl FileSource {
    fn source_name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    /// Loads the file once. On success the new config is served; on failure the old one
    /// keeps serving and the error is reported. Returns whether it loaded.
    pub fn reload(&self, state: &AppState) -> Result<bool, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let current = state.snapshot();
        // A file truncated by a writer that has not written yet reads as empty: never let
        // that replace a working config. An intentionally empty config says `model_list: []`.
        if text.trim().is_empty() && current.is_some() {
            return Err(format!(
                "{} is empty (a write in progress?); keeping the last good config (write `model_list: []` for an empty one)",
                self.path.display()
            ));
        }
        if current
            .as_ref()
            .is_some_and(|s| s.meta.hash == super::hash_text(&text))
        {
            return Ok(false);
        }
        let generation = current.map_or(1, |s| s.meta.generation + 1);
        let loaded = load(
            &text,
            generation,
            &self.source_name(),
            &self.defaults,
            &self.catalog,
            &NoSecrets,
        )
        .map_err(|e| format!("{}: {e}", self.path.display()))?;
        state.install(loaded);
        Ok(true)
    }

    /// Watches the file until the process ends.
    pub async fn watch(self, state: AppState) {
        let (tx, mut rx) = mpsc::channel::<()>(1);
        let file_name = self.path.file_name().map(|n| n.to_os_string());
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let relevant = match &ev {
                // Our own reads raise open/read events; counting them as changes would make
                // every reload schedule the next one, forever.
                Ok(ev) if !is_write(&ev.kind) => false,
                Ok(ev) => ev.paths.iter().any(|p| {
                    file_name.is_none() || p.file_name().map(|n| n.to_os_string()) == file_name
                        // Kubernetes-style volumes swap a `..data` symlink.
                        || p.to_string_lossy().contains("..data")
                }),
                Err(_) => true,
            };
            if relevant {
                // A full channel already holds a pending reload; that one covers this event.
                let _ = tx.try_send(());
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => {
                let dir = parent_dir(&self.path);
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot watch config directory; polling only");
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; polling only");
                None
            }
        };
        // After every change event the file is read once more shortly after: a writer that
        // was still writing when we read is caught then, not at the next poll.
        let mut recheck = false;
        loop {
            let wait = if recheck { RECHECK } else { POLL };
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { break; }
                    tokio::time::sleep(SETTLE).await;
                    while rx.try_recv().is_ok() {}
                    recheck = true;
                }
                _ = tokio::time::sleep(wait) => recheck = false,
            }
            match self.reload(&state) {
                Ok(_) => {}
                // Right after a change the writer may not be done (a plain `write` truncates,
                // then writes): a file that does not load yet is judged at the re-read, so a
                // half-written file is never reported as a broken config.
                Err(_) if recheck => {}
                // Failing polls of the same broken file would flood the log: report changes only.
                Err(e) => {
                    if state.last_error().as_deref() != Some(e.as_str()) {
                        state.reject(e);
                    }
                }
            }
        }
    }
}

/// Whether an event can mean new content: anything but an access, except a close after
/// writing (editors that write in place signal the end of their write that way).
fn is_write(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
