//! The one polling loop nox uses to wait for something outside it: a guest to boot, a job to
//! end, a domain to stop.

use std::time::{Duration, Instant};

/// Calls `check` with the time waited so far, every `poll`, until it returns `Some` (then
/// that), `limit` has passed (then `None`), or it fails (then its error: a wait ends early
/// when what it waits for has failed, or on Ctrl-C if `check` looks). Each wait is logged at
/// debug level with where it was and how long it took (`nox -vv`).
#[track_caller]
pub fn wait_until<T, E>(
    limit: Duration,
    poll: Duration,
    mut check: impl FnMut(Duration) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let at = std::panic::Location::caller();
    let start = Instant::now();
    let outcome = loop {
        match check(start.elapsed()) {
            Ok(Some(v)) => break Ok(Some(v)),
            Err(e) => break Err(e),
            Ok(None) if start.elapsed() >= limit => break Ok(None),
            Ok(None) => std::thread::sleep(poll.min(limit.saturating_sub(start.elapsed()))),
        }
    };
    let how = match &outcome {
        Ok(Some(_)) => "done",
        Ok(None) => "gave up",
        Err(_) => "failed",
    };
    tracing::debug!(at = %format_args!("{}:{}", at.file(), at.line()), waited = ?start.elapsed(), "wait {how}");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_gives_up_or_fails() {
        let ms = Duration::from_millis;
        let mut n = 0;
        let got: Result<_, ()> = wait_until(ms(1000), ms(1), |_| {
            n += 1;
            Ok((n == 3).then_some(n))
        });
        assert_eq!(got, Ok(Some(3)));
        let never: Result<Option<()>, ()> = wait_until(ms(20), ms(5), |_| Ok(None));
        assert_eq!(never, Ok(None));
        let failed: Result<Option<()>, &str> = wait_until(ms(1000), ms(1), |_| Err("stopped"));
        assert_eq!(failed, Err("stopped"));
    }
}
