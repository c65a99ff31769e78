//! Reload: build a whole new snapshot off the request path, then swap it in one step. A
//! failed build keeps the old snapshot serving, logs every problem and counts the failure.
//! Concurrent triggers coalesce: while one build runs, further triggers wait, and all of them
//! share the next build (which starts after they asked, so it reads what they asked about)
//! instead of starting their own (no reload storms).

use super::App;
use crate::filemap::DEBOUNCE;
use crate::snapshot::{DataSource, Snapshot, SnapshotError};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::sync::Mutex;

/// The outcome of the last reload, for `/admin/snapshot`.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadResult {
    /// `ok` or `failed`.
    pub result: &'static str,
    /// What triggered it.
    pub trigger: String,
    /// When it finished (Unix seconds).
    pub finished_unix: u64,
    /// How long building took, ms.
    pub build_ms: u64,
    /// The data version now served.
    pub version: String,
    /// The problems, if it failed.
    pub problems: Vec<String>,
}

/// Reload bookkeeping.
#[derive(Default)]
pub struct ReloadState {
    running: Mutex<()>,
    /// The last result and the number of the build that made it.
    last: std::sync::Mutex<Option<(u64, ReloadResult)>>,
    /// Builds started so far; a build's number is this count when it started.
    started: std::sync::atomic::AtomicU64,
}

impl ReloadState {
    /// The last result, if any reload happened.
    pub fn last(&self) -> Option<ReloadResult> {
        self.last
            .lock()
            .map(|g| g.as_ref().map(|(_, r)| r.clone()))
            .unwrap_or(None)
    }
}

/// Rebuilds the snapshot from the configured source and swaps it in if it is good.
pub async fn reload(app: &Arc<App>, trigger: &str) -> ReloadResult {
    use std::sync::atomic::Ordering::SeqCst;
    let asked_at = app.reload.started.load(SeqCst);
    let _guard = app.reload.running.lock().await;
    // Only a build that *started* after we asked has read the files as they were when we
    // asked (or newer); one that was already running may have read them before a change
    // that prompted this call, so it is not shared.
    if let Ok(g) = app.reload.last.lock()
        && let Some((build, last)) = g.as_ref()
        && *build > asked_at
    {
        return last.clone();
    }
    let build = app.reload.started.fetch_add(1, SeqCst) + 1;
    let source = app
        .config
        .regions
        .clone()
        .map_or(DataSource::Embedded, DataSource::Dir);
    let started = Instant::now();
    // Shares the served snapshot's territories and index when the geometry did not change.
    let previous = app.snapshot.load_full();
    let built =
        tokio::task::spawn_blocking(move || Snapshot::load_after(&source, Some(&previous))).await;
    let build_ms = started.elapsed().as_millis() as u64;
    let (result, problems) = match built {
        Ok(Ok(snap)) => {
            let changed = snap.version != app.snapshot.load().version;
            tracing::info!(trigger, version = %snap.version, changed, build_ms, "reloaded");
            app.swap(snap);
            ("ok", Vec::new())
        }
        Ok(Err(e)) => {
            let problems: Vec<String> = match &e {
                SnapshotError::Invalid(p) => p.iter().map(ToString::to_string).collect(),
                other => vec![other.to_string()],
            };
            for p in &problems {
                tracing::error!(trigger, problem = %p, "reload rejected; still serving the previous data");
            }
            (("failed"), problems)
        }
        Err(e) => (("failed"), vec![format!("reload task failed: {e}")]),
    };
    // [grants] Keys reload with the data (and on changes of their own directory).
    app.grants.reload_keys(trigger);
    app.metrics
        .reload(result == "ok", started.elapsed().as_secs_f64());
    let r = ReloadResult {
        result,
        trigger: trigger.to_owned(),
        finished_unix: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        build_ms,
        version: app.snapshot.load().version.clone(),
        problems,
    };
    if let Ok(mut g) = app.reload.last.lock() {
        *g = Some((build, r.clone()));
    }
    r
}

/// A running watch of the data directory; dropping it stops watching.
pub struct DirWatcher {
    _inner: Arc<std::sync::Mutex<notify::RecommendedWatcher>>,
}

/// Watches the data directory (recursively) and reloads after each burst of changes. Keep the
/// returned watcher alive as long as watching should go on.
///
/// When the configured path is itself a symlink (the object-storage sync pattern:
/// `current -> releases/v42`, swapped atomically with `mv -T`), its parent is watched too, for
/// events about that one entry, and after each swap the recursive watch is moved to the new
/// target; so a directory swap is seen like a file change.
///
/// # Errors
/// If the directory cannot be watched.
pub fn watch(app: Arc<App>, dir: std::path::PathBuf) -> notify::Result<DirWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let is_link = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink());
    let filter = dir.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        // Access events (reads, including our own) are not changes; the parent watch reports
        // its other entries too, which are not ours.
        if let Ok(ev) = res
            && !matches!(ev.kind, notify::EventKind::Access(_))
            && (ev.paths.is_empty() || ev.paths.iter().any(|p| p.starts_with(&filter)))
        {
            let _ = tx.send(());
        }
    })?;
    let watcher = Arc::new(std::sync::Mutex::new(watcher));
    {
        let mut w = watcher
            .lock()
            .map_err(|_| notify::Error::generic("watcher lock poisoned"))?;
        w.watch(&dir, RecursiveMode::Recursive)?;
        if is_link && let Some(parent) = dir.parent() {
            let parent = if parent.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                parent
            };
            w.watch(parent, RecursiveMode::NonRecursive)?;
        }
    }
    // Weak: dropping the DirWatcher drops the watcher and its sender, which ends this task.
    let rearm = Arc::downgrade(&watcher);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event arrived for DEBOUNCE.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if is_link
                && let Some(w) = rearm.upgrade()
                && let Ok(mut w) = w.lock()
            {
                // The link may point elsewhere now: watch what it points at.
                let _ = w.unwatch(&dir);
                if let Err(e) = w.watch(&dir, RecursiveMode::Recursive) {
                    tracing::warn!(error = %e, "cannot watch the data directory after a swap");
                }
            }
            reload(&app, "watch").await;
        }
    });
    Ok(DirWatcher { _inner: watcher })
}
