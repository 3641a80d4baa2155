//! `policyctl test` draws a progress line only on a terminal: piped or redirected output (CI, `--output json > f`)
//! gets the report and nothing else.

use std::path::{Path, PathBuf};
use std::process::Command;

fn policyctl() -> Command {
    Command::new(env!("CARGO_BIN_EXE_policyctl"))
}

/// A directory with two Rego test groups (two roots) so the run has more than one unit.
fn suites(dir: &Path) -> (PathBuf, PathBuf) {
    let one = dir.join("one");
    let two = dir.join("two");
    for (root, package) in [(&one, "one"), (&two, "two")] {
        std::fs::create_dir_all(root).expect("mkdir");
        std::fs::write(
            root.join("p.rego"),
            format!("package {package}\n\nallow := true\n"),
        )
        .expect("write");
        std::fs::write(
            root.join("p_test.rego"),
            format!("package {package}_test\n\nimport data.{package}\n\ntest_allow if {package}.allow\n"),
        )
        .expect("write");
    }
    (one, two)
}

#[test]
fn piped_output_has_no_progress_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = suites(dir.path());
    for output in ["table", "json", "junit"] {
        let run = policyctl()
            .args(["test", "--output", output])
            .arg(&one)
            .arg(&two)
            .env_remove("CI")
            .env("TERM", "xterm-256color")
            .output()
            .expect("policyctl runs");
        assert!(
            run.status.success(),
            "{output}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.is_empty(),
            "{output}: nothing on stderr when it is not a terminal, got {stderr:?}"
        );
        let stdout = String::from_utf8(run.stdout).expect("utf-8");
        assert!(
            !stdout.contains('\r') && !stdout.contains("\x1b[") && !stdout.contains("[1/2]"),
            "{output}: {stdout:?}"
        );
        if output == "json" {
            let report: serde_json::Value =
                serde_json::from_str(&stdout).expect("stdout is exactly one JSON document");
            assert_eq!(report["summary"]["passed"], 2);
        }
    }
}

#[test]
fn a_terminal_gets_the_progress_line_on_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = suites(dir.path());
    let typescript = dir.path().join("typescript");
    // `script` runs the command on a pseudo-terminal (util-linux, always present on Debian) and copies what the
    // terminal showed into the typescript file.
    let command = format!(
        "{} test {} {}",
        env!("CARGO_BIN_EXE_policyctl"),
        one.display(),
        two.display()
    );
    let run = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&typescript)
        .env_remove("CI")
        .env("TERM", "xterm-256color")
        .output()
        .expect("script(1) from util-linux runs the command on a pseudo-terminal");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let shown = std::fs::read_to_string(&typescript).expect("typescript");
    let first = format!("[1/2] {}", one.display());
    let second = format!("[2/2] {}", two.display());
    assert!(
        shown.contains(&first) && shown.contains(&second),
        "progress missing on a terminal: {shown:?}"
    );
    assert!(
        shown.contains("\r\x1b[2K"),
        "the line is redrawn in place: {shown:?}"
    );
    assert!(
        shown.contains("2 cases: 2 passed"),
        "the report follows: {shown:?}"
    );

    // The same run under CI=true draws nothing, terminal or not.
    let ci = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(dir.path().join("typescript-ci"))
        .env("CI", "true")
        .output()
        .expect("script runs");
    assert!(ci.status.success());
    let shown = std::fs::read_to_string(dir.path().join("typescript-ci")).expect("typescript");
    assert!(!shown.contains("[1/2]"), "no progress in CI: {shown:?}");
}
