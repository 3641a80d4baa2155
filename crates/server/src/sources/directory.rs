//! The directory source: a policy directory, typically a ConfigMap mounted as a volume, followed by polling a cheap
//! fingerprint (see the [module docs](super) for why polling).
//!
//! Each poll takes a [`Fingerprint`]: the target of the `..data` link (the kubelet's atomic-writer layout) and the
//! path, size and modification time of every policy file the loader would read. When it changes, the source looks
//! again when the debounce period is over (and again after that while it keeps changing); once it stayed unchanged
//! for the debounce period, it reads the files ([`loader::read_dir`]), checks that the
//! fingerprint did not move while it read, and sends the snapshot to the publisher when its content hash differs from
//! the last one sent. Every rescan interval the files are read even without a fingerprint change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::{snapshot_key, SourcesStatus, Update};
use crate::policy::loader::{self, policy_entries};
use crate::policy::{LoadError, SourceRef};

/// Timings of the directory source.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    /// Interval between two fingerprints.
    pub poll: Duration,
    /// Quiet period after a change before reading.
    pub debounce: Duration,
    /// Interval of full reads without a fingerprint change.
    pub rescan: Duration,
}

/// What a poll compares: cheap to take, changes whenever a policy file may have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    data_link: Option<PathBuf>,
    files: Vec<(PathBuf, Option<u64>, Option<SystemTime>)>,
}

/// Take the fingerprint of `dir`: the `..data` link target and, for every policy file the loader reads (hidden
/// entries skipped, links followed), its path, size and modification time. Unreadable entries are part of the
/// fingerprint too (without size and time), so an error that appears or goes away is a change.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let data_link = std::fs::read_link(dir.join("..data")).ok();
    let mut files = Vec::new();
    for entry in policy_entries(dir) {
        match entry {
            Ok(entry) => {
                let metadata = entry.metadata().ok();
                let size = metadata.as_ref().map(|m| m.len());
                let modified = metadata.and_then(|m| m.modified().ok());
                files.push((entry.into_path(), size, modified));
            }
            Err(err) => files.push((
                err.path().map(Path::to_path_buf).unwrap_or_default(),
                None,
                None,
            )),
        }
    }
    Fingerprint { data_link, files }
}

/// Read the policy files of `dir`.
fn read(dir: &Path) -> super::Snapshot {
    loader::read_dir(dir)
}

/// Read the directory and take its fingerprint afterwards, on a blocking thread.
async fn read_blocking(dir: &Path) -> (super::Snapshot, Fingerprint) {
    let dir = dir.to_path_buf();
    let origin = dir.display().to_string();
    tokio::task::spawn_blocking(move || (read(&dir), fingerprint(&dir)))
        .await
        .unwrap_or_else(|err| {
            (
                Err(vec![LoadError::new(
                    SourceRef::file(&origin),
                    format!("reading the directory failed: {err}"),
                )]),
                Fingerprint::default(),
            )
        })
}

async fn fingerprint_blocking(dir: &Path) -> Fingerprint {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || fingerprint(&dir))
        .await
        .unwrap_or_default()
}

/// Follow `dir` until the publisher goes away.
pub(crate) async fn run(
    dir: PathBuf,
    timings: Timings,
    index: usize,
    tx: mpsc::Sender<Update>,
    status: Arc<SourcesStatus>,
) {
    let poll = timings.poll.max(Duration::from_millis(10));
    let (snapshot, mut seen) = read_blocking(&dir).await;
    let mut last_sent = snapshot_key(&snapshot);
    if !send(&tx, &status, index, &dir, snapshot).await {
        return;
    }
    let mut changed_at: Option<Instant> = None;
    let mut last_read = Instant::now();
    loop {
        // While a change settles, look again right when the debounce period is over instead of a poll later.
        let wait = match changed_at {
            Some(at) => timings
                .debounce
                .saturating_sub(at.elapsed())
                .clamp(Duration::from_millis(10), poll),
            None => poll,
        };
        tokio::time::sleep(wait).await;
        let current = fingerprint_blocking(&dir).await;
        if current != seen {
            tracing::debug!(dir = %dir.display(), "policy directory changed; waiting for it to settle");
            seen = current;
            changed_at = Some(Instant::now());
            continue;
        }
        let due = match changed_at {
            Some(at) => at.elapsed() >= timings.debounce,
            None => last_read.elapsed() >= timings.rescan,
        };
        if !due {
            continue;
        }
        let (snapshot, after) = read_blocking(&dir).await;
        last_read = Instant::now();
        if after != seen {
            // It changed while we read: wait for it to settle again.
            seen = after;
            changed_at = Some(Instant::now());
            continue;
        }
        changed_at = None;
        let key = snapshot_key(&snapshot);
        if key == last_sent {
            continue;
        }
        last_sent = key;
        tracing::info!(dir = %dir.display(), "policy directory changed; rebuilding the policy set");
        if !send(&tx, &status, index, &dir, snapshot).await {
            return;
        }
    }
}

/// Update the status and hand the snapshot to the publisher; false when the publisher is gone.
async fn send(
    tx: &mpsc::Sender<Update>,
    status: &SourcesStatus,
    index: usize,
    dir: &Path,
    snapshot: super::Snapshot,
) -> bool {
    match &snapshot {
        Ok(files) => {
            let count = files.len();
            status.update(index, |s| {
                s.synced = true;
                s.files = count;
                s.updated_at = Some(SystemTime::now());
                s.problem = None;
            });
        }
        Err(errors) => {
            let message = format!(
                "cannot read {}: {}",
                dir.display(),
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            status.update(index, |s| s.updated_at = Some(SystemTime::now()));
            status.problem(index, message);
        }
    }
    tx.send(Update {
        source: index,
        snapshot,
    })
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_sees_edits_additions_removals_and_link_swaps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::write(root.join("a.rego"), "package a").expect("write");
        std::fs::write(root.join("notes.txt"), "x").expect("write");
        let first = fingerprint(root);
        assert_eq!(first.files.len(), 1);
        assert_eq!(fingerprint(root), first, "stable without changes");

        std::fs::write(root.join("notes.txt"), "changed").expect("write");
        assert_eq!(
            fingerprint(root),
            first,
            "files the loader does not read do not count"
        );

        std::fs::write(root.join("a.rego"), "package a\n").expect("write");
        let edited = fingerprint(root);
        assert_ne!(edited, first);

        std::fs::write(root.join("b.yaml"), "").expect("write");
        let added = fingerprint(root);
        assert_ne!(added, edited);

        std::fs::remove_file(root.join("b.yaml")).expect("remove");
        assert_ne!(fingerprint(root), added);

        #[cfg(unix)]
        {
            let before = fingerprint(root);
            std::fs::create_dir(root.join("..v1")).expect("mkdir");
            std::os::unix::fs::symlink("..v1", root.join("..data")).expect("symlink");
            assert_ne!(fingerprint(root), before, "the ..data link counts");
        }
    }
}
