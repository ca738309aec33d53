//! The terminal face of [`nox_ops::Ui`]: questions through dialoguer, only on a terminal;
//! notes on stderr; progress through indicatif (see progress.rs).

use std::io::{IsTerminal, Write};

use nox_core::{Error, Progress, Result};

use crate::progress::Terminal;

#[derive(Debug, Default)]
pub struct TerminalUi {
    progress: Terminal,
}

impl nox_ops::Ui for TerminalUi {
    fn interactive(&self) -> bool {
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    fn confirm(&self, prompt: &str) -> Result<bool> {
        dialoguer::Confirm::new()
            .with_prompt(prompt)
            .default(false)
            .interact()
            .map_err(|e| Error::Usage(format!("no answer: {e}")))
    }

    fn select(&self, prompt: &str, items: &[String], default: usize) -> Result<Option<usize>> {
        dialoguer::Select::new()
            .with_prompt(prompt)
            .items(items)
            .default(default)
            .interact_opt()
            .map_err(|e| Error::Usage(format!("no choice made: {e}")))
    }

    fn note(&self, message: &str) {
        self.progress.suspend(|| eprintln!("{message}"));
    }

    fn progress(&self) -> &dyn Progress {
        &self.progress
    }

    fn output(&self, json: bool) -> Box<dyn Write + Send> {
        if json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    }

    fn errors(&self) -> Box<dyn Write + Send> {
        Box::new(std::io::stderr())
    }
}
