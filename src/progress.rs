//! Progress on the terminal for long commands (`where --batch`, `validate`, `diff`,
//! `import`): a bar with rate and ETA when the size of the work is known, a spinner with the
//! count and rate otherwise.
//!
//! Drawn on stderr only when stderr is a terminal and `--quiet` is not given, so pipes, logs
//! and scripts see exactly what they saw before; stdout is never touched.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// What the bar counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Bytes of input (shown as KiB/MiB).
    Bytes,
    /// Items: lines, selectors, files.
    Items,
}

/// Where long work reports how far it got: the size of the whole once it is known, then the
/// units done. [`Progress`] draws it; [`NoProgress`] (the server's loads and reloads) ignores
/// it, at the cost of an empty call per file or per read of a streamed file.
pub trait Tally {
    /// The work is `total` units in all.
    fn total(&self, total: u64);
    /// `n` more units are done.
    fn advance(&self, n: u64);
}

/// A [`Tally`] that ignores what it is told.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl Tally for NoProgress {
    #[inline]
    fn total(&self, _: u64) {}
    #[inline]
    fn advance(&self, _: u64) {}
}

/// A progress display that may be hidden; every method is cheap when it is.
#[derive(Clone, Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    unit: Unit,
}

/// Whether progress is drawn: stderr is a terminal and the user did not ask for quiet.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// The look of a display: a bar with position, total, rate and ETA when the total is known,
/// a spinner with the count, rate and elapsed time otherwise.
fn style(total: Option<u64>, unit: Unit) -> ProgressStyle {
    let template = match (total, unit) {
        (Some(_), Unit::Bytes) => {
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}, ETA {eta}"
        }
        (Some(_), Unit::Items) => "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec}, ETA {eta}",
        (None, Unit::Bytes) => "{spinner} {msg} {bytes} {bytes_per_sec}, {elapsed}",
        (None, Unit::Items) => "{spinner} {msg} {human_pos} {per_sec}, {elapsed}",
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    /// A hidden display (nothing is drawn).
    pub fn hidden() -> Progress {
        Progress {
            bar: None,
            unit: Unit::Items,
        }
    }

    /// A bar over `total` units (a spinner with count and rate when `total` is unknown, until
    /// [`Tally::total`] gives it), labelled `what`; hidden unless [`wanted`].
    pub fn new(what: &str, total: Option<u64>, unit: Unit, quiet: bool) -> Progress {
        if !wanted(quiet) {
            return Progress::hidden();
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(10))
            .with_style(style(total, unit))
            .with_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            unit,
        }
    }

    /// A spinner with the elapsed time, for work whose size is not known ahead.
    pub fn spinner(what: &str, quiet: bool) -> Progress {
        if !wanted(quiet) {
            return Progress::hidden();
        }
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
            .with_style(style)
            .with_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar: Some(bar),
            unit: Unit::Items,
        }
    }

    /// Whether anything is drawn.
    pub fn is_shown(&self) -> bool {
        self.bar.is_some()
    }

    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// Sets the position.
    pub fn set(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    /// Changes the label.
    pub fn label(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(what.to_owned());
        }
    }

    /// Removes the display from the terminal. Its last state is drawn once first (the draw
    /// rate would otherwise skip it), so a recording of the terminal shows where it ended.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.force_draw();
            b.finish_and_clear();
        }
    }

    /// A reader that advances the display by the bytes read through it.
    pub fn reader<R: std::io::Read>(&self, inner: R) -> ProgressReader<'_, R> {
        ProgressReader::new(inner, self)
    }
}

impl Tally for Progress {
    /// Turns a spinner into a bar over `total` units.
    fn total(&self, total: u64) {
        if let Some(b) = &self.bar {
            b.set_length(total);
            b.set_style(style(Some(total), self.unit));
        }
    }

    fn advance(&self, n: u64) {
        self.inc(n);
    }
}

/// A reader that counts its bytes on a [`Tally`].
pub struct ProgressReader<'a, R> {
    inner: R,
    tally: &'a dyn Tally,
    read: u64,
}

impl<'a, R> ProgressReader<'a, R> {
    /// Counts the bytes read from `inner` on `tally`.
    pub fn new(inner: R, tally: &'a dyn Tally) -> Self {
        ProgressReader {
            inner,
            tally,
            read: 0,
        }
    }

    /// The bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl<R> std::fmt::Debug for ProgressReader<'_, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgressReader")
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.tally.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn quiet_or_no_terminal_draws_nothing_and_the_reader_passes_bytes_through() {
        let p = Progress::new("x", Some(10), Unit::Bytes, true);
        assert!(!p.is_shown(), "--quiet hides it");
        // The test harness captures stderr: not a terminal.
        assert_eq!(
            Progress::new("x", None, Unit::Items, false).is_shown(),
            std::io::stderr().is_terminal()
        );
        let mut out = Vec::new();
        p.reader(&b"lat,lon\n1,2\n"[..])
            .read_to_end(&mut out)
            .expect("read");
        assert_eq!(out, b"lat,lon\n1,2\n");
    }
}
