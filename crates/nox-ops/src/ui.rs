//! How a workflow talks to the person running nox, without knowing about terminals: the CLI
//! implements [`Ui`] with dialoguer and indicatif; unit tests with a script of answers.

use std::io::Write;

use nox_core::{Progress, Result};

pub trait Ui {
    /// Whether someone can answer a question (stdin and stderr are terminals).
    fn interactive(&self) -> bool;

    /// Asks a yes/no question; no is the default.
    fn confirm(&self, prompt: &str) -> Result<bool>;

    /// Picks one of `items` (`default` preselected); `None` when the user backs out.
    fn select(&self, prompt: &str, items: &[String], default: usize) -> Result<Option<usize>>;

    /// Tells the user something now: one or more lines on stderr.
    fn note(&self, message: &str);

    /// Spinners and bars for long steps.
    fn progress(&self) -> &dyn Progress;

    /// Where a guest's output goes (launch scripts): the terminal's stdout, or stderr when
    /// stdout is reserved for JSON.
    fn output(&self, json: bool) -> Box<dyn Write + Send>;

    /// Where a guest's error output goes.
    fn errors(&self) -> Box<dyn Write + Send>;
}
