//! The progress line of `policyctl test` on long runs: `[12/175] path/to/suite.yaml`, redrawn in place on standard
//! error, only when standard error is a terminal (never in CI logs, never mixed into redirected JSON or JUnit).

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};

use super::Progress;

/// Longest path shown; longer ones keep their end (the file name), prefixed with `...`.
const MAX_PATH_CHARS: usize = 100;

/// Erase the current terminal line and return to its start.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// Whether a progress line is wanted, given whether the stream is a terminal and the `CI` and `TERM` variables.
pub fn wanted(is_terminal: bool, ci: Option<&OsStr>, term: Option<&OsStr>) -> bool {
    is_terminal && ci.is_none_or(OsStr::is_empty) && term != Some(OsStr::new("dumb"))
}

/// Whether standard error should get a progress line.
pub fn wanted_on_stderr() -> bool {
    wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("CI").as_deref(),
        std::env::var_os("TERM").as_deref(),
    )
}

/// A progress line drawn on `out`, or nothing at all when disabled.
#[derive(Debug)]
pub struct ProgressLine<W: Write> {
    out: W,
    enabled: bool,
    drawn: bool,
}

impl<W: Write> ProgressLine<W> {
    /// A progress line on `out`; when `enabled` is false every call is a no-op.
    pub fn new(out: W, enabled: bool) -> Self {
        ProgressLine {
            out,
            enabled,
            drawn: false,
        }
    }

    /// Redraw the line for the file about to run.
    pub fn update(&mut self, progress: Progress<'_>) {
        if !self.enabled {
            return;
        }
        let path = shorten(&progress.path.display().to_string());
        // A terminal that went away is no reason to fail a test run: drawing is best effort.
        let _ = write!(
            self.out,
            "{CLEAR_LINE}[{}/{}] {path}",
            progress.current, progress.total
        );
        let _ = self.out.flush();
        self.drawn = true;
    }

    /// Erase the line, so the report starts on a clean line.
    pub fn finish(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "{CLEAR_LINE}");
            let _ = self.out.flush();
            self.drawn = false;
        }
    }

    /// The underlying writer.
    pub fn into_inner(self) -> W {
        self.out
    }
}

fn shorten(path: &str) -> String {
    let chars = path.chars().count();
    if chars <= MAX_PATH_CHARS {
        return path.to_string();
    }
    let tail: String = path.chars().skip(chars - (MAX_PATH_CHARS - 3)).collect();
    format!("...{tail}")
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn at(current: usize, total: usize, path: &Path) -> Progress<'_> {
        Progress {
            current,
            total,
            path,
        }
    }

    #[test]
    fn disabled_line_writes_nothing() {
        let mut line = ProgressLine::new(Vec::new(), false);
        line.update(at(1, 2, Path::new("a.yaml")));
        line.finish();
        assert!(line.into_inner().is_empty());
    }

    #[test]
    fn enabled_line_redraws_in_place_and_clears_at_the_end() {
        let mut line = ProgressLine::new(Vec::new(), true);
        line.update(at(1, 2, Path::new("a.yaml")));
        line.update(at(2, 2, Path::new("b/c.yaml")));
        line.finish();
        let text = String::from_utf8(line.into_inner()).expect("utf-8");
        assert_eq!(
            text,
            "\r\x1b[2K[1/2] a.yaml\r\x1b[2K[2/2] b/c.yaml\r\x1b[2K"
        );
        assert!(!text.contains('\n'), "the line is redrawn, never scrolled");
    }

    #[test]
    fn finish_without_updates_writes_nothing() {
        let mut line = ProgressLine::new(Vec::new(), true);
        line.finish();
        assert!(line.into_inner().is_empty());
    }

    #[test]
    fn long_paths_keep_their_end() {
        let long = format!("{}/suite.yaml", "déjà/".repeat(40));
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_PATH_CHARS);
        assert!(
            short.starts_with("...") && short.ends_with("/suite.yaml"),
            "{short}"
        );
        assert_eq!(shorten("a/b.yaml"), "a/b.yaml");
    }

    #[test]
    fn only_interactive_terminals_get_progress() {
        let xterm = Some(OsStr::new("xterm-256color"));
        assert!(wanted(true, None, xterm));
        assert!(wanted(true, Some(OsStr::new("")), xterm));
        assert!(
            !wanted(false, None, xterm),
            "not a terminal: redirected or piped"
        );
        assert!(
            !wanted(true, Some(OsStr::new("true")), xterm),
            "CI, even with a pseudo-terminal"
        );
        assert!(!wanted(true, None, Some(OsStr::new("dumb"))));
    }
}
