//! The terminal face of [`nox_core::Progress`]: a spinner with elapsed time for steps and
//! waits, a bar for downloads. indicatif draws nothing when stderr is not a terminal, so
//! scripts and `--json` runs see only warnings.

use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Default)]
pub struct Terminal {
    bar: Mutex<Option<ProgressBar>>,
}

impl Terminal {
    /// Runs `f` (which prints) with the spinner out of the way.
    pub fn suspend(&self, f: impl FnOnce()) {
        match self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(b) => b.suspend(f),
            None => f(),
        }
    }

    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            f(b);
        }
    }
}

fn spinner(message: &str) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    b.set_message(message.to_string());
    b.enable_steady_tick(Duration::from_millis(120));
    b
}

impl nox_core::Progress for Terminal {
    fn step(&self, message: &str) {
        let mut bar = self.bar.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = bar.take() {
            old.finish_and_clear();
        }
        *bar = Some(spinner(message));
    }

    fn warn(&self, message: &str) {
        let line = format!("warning: {message}");
        match self.bar.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    fn bytes(&self, done: u64, total: Option<u64>) {
        self.with_bar(|b| {
            if let Some(t) = total {
                if b.length() != Some(t) {
                    b.set_length(t);
                    if let Ok(style) = ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    ) {
                        b.set_style(style.progress_chars("=> "));
                    }
                }
            }
            b.set_position(done);
        });
    }

    fn waiting(&self, _what: &str, _elapsed: Duration) {
        // The spinner already shows the step and its elapsed time, ticking on its own.
    }

    fn done(&self) {
        if let Some(b) = self.bar.lock().unwrap_or_else(|p| p.into_inner()).take() {
            b.finish_and_clear();
        }
    }
}
