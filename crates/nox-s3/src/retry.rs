//! Retrying S3 requests that failed on the way, not at the server's word: a connection cut
//! mid-request, a truncated answer, or a server's transient failure (5xx, 408, 429) is tried
//! again, a bounded number of times with a doubling pause; a refusal (403, 404, 400...) is
//! final at once, so wrong credentials still fail fast.
//!
//! rust-s3's own retries are turned off (`s3::set_retries(0)` in `Remote::new`): they cover
//! only some requests, and nox wants every attempt said on stderr and bounded in one place.

use std::time::Duration;

use s3::error::S3Error;

/// How many times a request is tried, and the pause before the second try (doubled after).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub attempts: u32,
    pub first_pause: Duration,
}

/// 5 tries, pauses of 0.5, 1, 2 and 4 s: a server that keeps cutting fails in under 8 s per
/// request, one that cut once costs half a second.
pub const POLICY: Policy = Policy {
    attempts: 5,
    first_pause: Duration::from_millis(500),
};

/// Whether `e` is a failure on the way (worth another try), not the server's answer.
pub fn transient(e: &S3Error) -> bool {
    match e {
        // The transport: refused, reset or cut connections, timeouts, truncated bodies.
        S3Error::Atto(_) | S3Error::HttpFail | S3Error::Io(_) => true,
        // A reply cut short parses as broken XML or text.
        S3Error::SerdeXml(_) | S3Error::Utf8(_) | S3Error::FromUtf8(_) => true,
        S3Error::HttpFailWithBody(status, _) => {
            matches!(status, 408 | 429) || (500..600).contains(status)
        }
        _ => false,
    }
}

/// Runs `f` until it succeeds, fails for good, or has been tried `policy.attempts` times;
/// `retrying` is told of each failed try that will be repeated (attempt number, error). A
/// Ctrl-C stops the retries.
pub fn retry<T>(
    policy: Policy,
    retrying: &dyn Fn(u32, &S3Error),
    mut f: impl FnMut(u32) -> Result<T, S3Error>,
) -> Result<T, S3Error> {
    let mut pause = policy.first_pause;
    let mut attempt = 1;
    loop {
        match f(attempt) {
            Ok(v) => return Ok(v),
            Err(e)
                if attempt < policy.attempts
                    && transient(&e)
                    && !nox_core::interrupt::requested() =>
            {
                retrying(attempt, &e);
                std::thread::sleep(pause);
                pause *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const FAST: Policy = Policy {
        attempts: 4,
        first_pause: Duration::from_millis(1),
    };

    fn cut() -> S3Error {
        S3Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        ))
    }

    #[test]
    fn a_cut_connection_is_tried_again_until_it_works() {
        let calls = Cell::new(0);
        let told = Cell::new(0);
        let r = retry(FAST, &|_, _| told.set(told.get() + 1), |n| {
            calls.set(n);
            if n < 3 {
                Err(cut())
            } else {
                Ok("done")
            }
        });
        assert_eq!(r.unwrap(), "done");
        assert_eq!(calls.get(), 3);
        assert_eq!(told.get(), 2);
    }

    #[test]
    fn tries_are_bounded_and_the_last_error_is_returned() {
        let calls = Cell::new(0);
        let r: Result<(), _> = retry(FAST, &|_, _| {}, |n| {
            calls.set(n);
            Err(S3Error::HttpFailWithBody(503, "SlowDown".into()))
        });
        assert!(matches!(r, Err(S3Error::HttpFailWithBody(503, _))));
        assert_eq!(calls.get(), FAST.attempts);
    }

    #[test]
    fn a_refusal_is_final_at_once() {
        for status in [400, 403, 404] {
            let calls = Cell::new(0);
            let r: Result<(), _> = retry(FAST, &|_, _| {}, |n| {
                calls.set(n);
                Err(S3Error::HttpFailWithBody(status, String::new()))
            });
            assert!(r.is_err());
            assert_eq!(calls.get(), 1, "HTTP {status} was retried");
        }
    }
}
