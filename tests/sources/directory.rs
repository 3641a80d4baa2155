//! The directory source on real files: plain edits, additions and removals, and the kubelet's `..data` swap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use policyctl::sources::{Sources, SourcesConfig};

use crate::{denials, names, rego, Target};

/// Fast timings so the test does not wait long; the logic is the same as with the defaults.
pub fn fast(dir: &Path) -> SourcesConfig {
    SourcesConfig {
        poll_interval: Duration::from_millis(20),
        debounce: Duration::from_millis(100),
        rescan_interval: Duration::from_millis(500),
        ..SourcesConfig::directory(dir)
    }
}

/// A ConfigMap volume as the kubelet writes it: `..<version>/` holds the data, `..data` links to it, and every key
/// is a top-level link `key -> ..data/key`.
pub struct ConfigMapVolume {
    pub root: PathBuf,
    version: usize,
}

impl ConfigMapVolume {
    pub fn new(root: &Path, files: &[(&str, &str)]) -> ConfigMapVolume {
        let mut volume = ConfigMapVolume {
            root: root.to_path_buf(),
            version: 0,
        };
        volume.swap(files);
        volume
    }

    /// Write a new version and swap it in the way the kubelet's atomic writer does: new timestamped directory,
    /// `..data_tmp` link to it renamed over `..data` (one atomic rename), then the top-level links of added keys are
    /// created and those of removed keys deleted, and the old directory is removed.
    pub fn swap(&mut self, files: &[(&str, &str)]) {
        let old = self.version_dir();
        self.version += 1;
        let new = self.version_dir();
        std::fs::create_dir(&new).expect("mkdir version");
        for (key, content) in files {
            std::fs::write(new.join(key), content).expect("write key");
        }
        let tmp = self.root.join("..data_tmp");
        std::os::unix::fs::symlink(new.file_name().expect("name"), &tmp)
            .expect("symlink ..data_tmp");
        std::fs::rename(&tmp, self.root.join("..data")).expect("rename over ..data");
        for (key, _) in files {
            let link = self.root.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(key), &link).expect("key link");
            }
        }
        for entry in std::fs::read_dir(&self.root).expect("read root") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with('.') && !files.iter().any(|(key, _)| *key == name) {
                std::fs::remove_file(entry.path()).expect("remove old key link");
            }
        }
        if self.version > 1 {
            std::fs::remove_dir_all(old).expect("remove old version");
        }
    }

    fn version_dir(&self) -> PathBuf {
        self.root
            .join(format!("..2026_11_23_23_00_00.{:04}", self.version))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_volume_swaps_publish_new_sets_and_a_broken_one_keeps_the_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a_v1 = rego("team.a", "a v1");
    let b_v1 = rego("team.b", "b v1");
    let mut volume = ConfigMapVolume::new(dir.path(), &[("a.rego", &a_v1), ("b.rego", &b_v1)]);
    let target = Target::new();
    let _running = Sources::new(fast(dir.path()))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");

    let first = target.until_generation(1).await;
    assert_eq!(names(&first), ["team.a", "team.b"]);
    assert_eq!(denials(&first), ["[team.a] a v1", "[team.b] b v1"]);

    // A new version: a changed key and an added one.
    let a_v2 = rego("team.a", "a v2");
    let c_v1 = rego("team.c", "c v1");
    volume.swap(&[("a.rego", &a_v2), ("b.rego", &b_v1), ("c.rego", &c_v1)]);
    // The kubelet links a new key only after the `..data` rename; a poll in between may publish a set without it.
    let second = target
        .until_denials(&["[team.a] a v2", "[team.b] b v1", "[team.c] c v1"])
        .await;
    // The first set is untouched: a request that holds it still gets its answers.
    assert_eq!(denials(&first), ["[team.a] a v1", "[team.b] b v1"]);

    // A broken version is rejected: the error names the file, the old set keeps answering, the error is counted.
    volume.swap(&[
        ("a.rego", "package team.a\n\ndeny contains msg if {\n"),
        ("b.rego", &b_v1),
        ("c.rego", &c_v1),
    ]);
    let errors = target.until_rejected().await;
    let a_path = dir.path().join("a.rego").display().to_string();
    assert!(errors.iter().any(|e| e.starts_with(&a_path)), "{errors:?}");
    assert_eq!(target.generation(), second.generation());
    assert!(
        target
            .metrics
            .encode()
            .contains("policyctl_policy_load_errors_total 1"),
        "{}",
        target.metrics.encode()
    );
    let report = serde_json::to_value(policyctl::sources::StatusReport::new(
        &target.store,
        &target.status,
    ))
    .expect("serializes");
    assert_eq!(report["active"]["generation"], second.generation());
    assert!(
        report["last_error"]["errors"][0]["location"]["origin"]
            .as_str()
            .is_some(),
        "{report}"
    );
    assert_eq!(report["sources"][0]["kind"], "directory");

    // Fixed, with a key removed: its policy goes away.
    volume.swap(&[("a.rego", &a_v2), ("c.rego", &c_v1)]);
    let third = target
        .until_denials(&["[team.a] a v2", "[team.c] c v1"])
        .await;
    assert!(target.store.last_error().is_none());
    let metrics = target.metrics.encode();
    assert!(
        metrics.contains(&format!(
            "policyctl_policy_set_generation {}",
            third.generation()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "policyctl_policy_set_info{{hash=\"{}\"}} 1",
            third.hash()
        )),
        "{metrics}"
    );
    assert_eq!(
        metrics.matches("policyctl_policy_set_info{").count(),
        1,
        "only the active hash: {metrics}"
    );

    // The same content under a new version directory is not rebuilt.
    volume.swap(&[("a.rego", &a_v2), ("c.rego", &c_v1)]);
    // Give the source time to see that swap on its own (several debounce periods) before the next one.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let marker = rego("team.d", "d v1");
    volume.swap(&[("a.rego", &a_v2), ("c.rego", &c_v1), ("d.rego", &marker)]);
    let fourth = target.until_generation(third.generation() + 1).await;
    assert_eq!(names(&fourth), ["team.a", "team.c", "team.d"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_edits_additions_and_removals_are_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir(root.join("sub")).expect("mkdir");
    std::fs::write(root.join("a.rego"), rego("a", "a v1")).expect("write");
    let target = Target::new();
    let _running = Sources::new(fast(root))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    let first = target.until_generation(1).await;
    assert_eq!(denials(&first), ["[a] a v1"]);

    std::fs::write(root.join("a.rego"), rego("a", "a version 2")).expect("edit");
    assert_eq!(
        denials(&target.until_generation(2).await),
        ["[a] a version 2"]
    );

    std::fs::write(root.join("sub/b.rego"), rego("b", "b v1")).expect("add");
    assert_eq!(
        denials(&target.until_generation(3).await),
        ["[a] a version 2", "[b] b v1"]
    );

    std::fs::remove_file(root.join("a.rego")).expect("remove");
    assert_eq!(denials(&target.until_generation(4).await), ["[b] b v1"]);

    // A YAML document of an unknown kind is rejected with file, document and field.
    std::fs::write(
        root.join("x.yaml"),
        "apiVersion: example.com/v1\nkind: Mystery\n",
    )
    .expect("write");
    let errors = target.until_rejected().await;
    let expected = format!(
        "{}, document 1: kind: unknown policy kind",
        root.join("x.yaml").display()
    );
    assert!(errors[0].starts_with(&expected), "{errors:?}");
    assert_eq!(target.generation(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_not_ready_until_it_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policies = dir.path().join("policies");
    let target = Target::new();
    let _running = Sources::new(fast(&policies))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    let errors = target.until_rejected().await;
    assert!(errors[0].ends_with("not a directory"), "{errors:?}");
    assert!(target.store.current().is_none());

    std::fs::create_dir(&policies).expect("mkdir");
    std::fs::write(policies.join("a.rego"), rego("a", "a v1")).expect("write");
    assert_eq!(denials(&target.until_generation(1).await), ["[a] a v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptying_the_directory_is_refused_unless_empty_sets_are_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("a.rego"), rego("a", "a v1")).expect("write");
    let target = Target::new();
    let _running = Sources::new(fast(root))
        .start(target.publisher.clone(), target.status.clone())
        .await
        .expect("starts");
    assert_eq!(denials(&target.until_generation(1).await), ["[a] a v1"]);

    std::fs::remove_file(root.join("a.rego")).expect("empty the directory");
    let errors = target.until_rejected().await;
    assert!(
        errors[0].contains("no policies") && errors[0].contains("--allow-empty-policy-set"),
        "{errors:?}"
    );
    assert_eq!(target.metrics.policy_load_errors.get(), 1);
    let set = target.store.current().expect("the old set keeps serving");
    assert_eq!(
        (set.generation(), denials(&set)),
        (1, vec!["[a] a v1".to_string()])
    );

    // With --allow-empty-policy-set the same change is published.
    let allowed = tempfile::tempdir().expect("tempdir");
    std::fs::write(allowed.path().join("a.rego"), rego("a", "a v1")).expect("write");
    let open = Target::new();
    let _running = Sources::new(SourcesConfig {
        allow_empty_policy_set: true,
        ..fast(allowed.path())
    })
    .start(open.publisher.clone(), open.status.clone())
    .await
    .expect("starts");
    open.until_generation(1).await;
    std::fs::remove_file(allowed.path().join("a.rego")).expect("empty the directory");
    assert!(open.until_generation(2).await.policies().is_empty());
}
