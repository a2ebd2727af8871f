//! Control-plane calls: argument checks, retries and error mapping.
//!
//! Retries follow E2B's Python SDK 2.63 (see `docs/control-plane.md`): a call is retried
//! up to [`RETRIES`] times when the answer says `Should-Retry: true`, or carries no such
//! header and is a 429, 502, 503 or 504; it waits `Retry-After` seconds when the answer
//! gives them, else an exponential backoff with jitter, and gives up when the wait would
//! exceed the request timeout. Transport failures are not retried.

use std::future::Future;
use std::time::Duration;

use e2b_api::types;
use reqwest::header::HeaderMap;

use crate::error::{self, Context, Error, Result};

/// How many times a control-plane call is retried after its first attempt.
pub(super) const RETRIES: u32 = 3;
/// The first backoff wait; each retry doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest backoff wait.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// The header by which the API says whether a failed call may be retried.
const SHOULD_RETRY: &str = "should-retry";

type ApiResult<T> = std::result::Result<e2b_api::ResponseValue<T>, e2b_api::Error<types::Error>>;

/// Sends the request `send` builds, again while the answer allows a retry (module docs).
/// `send` builds the whole request each time, so a create must reuse its idempotency key.
pub(crate) async fn send_with_retries<T, F, Fut>(
    request_timeout: Option<Duration>,
    mut send: F,
) -> ApiResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ApiResult<T>>,
{
    let mut retry = 0;
    loop {
        let result = send().await;
        let Err(err) = &result else {
            return result;
        };
        if retry == RETRIES {
            return result;
        }
        let (status, headers) = match err {
            e2b_api::Error::ErrorResponse(response) => (response.status(), response.headers()),
            e2b_api::Error::UnexpectedResponse(response) => (response.status(), response.headers()),
            _ => return result,
        };
        let Some(wait) = retry_wait(status.as_u16(), headers, retry, rand::random()) else {
            return result;
        };
        if request_timeout.is_some_and(|limit| wait > limit) {
            return result;
        }
        tracing::debug!(
            status = status.as_u16(),
            ?wait,
            retry,
            "retrying a control-plane call"
        );
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// How long to wait before retry number `retry` (from 0) of an answer with `status` and
/// `headers`, or `None` when it must not be retried. `jitter` in `[0, 1)` picks the backoff
/// between 50 % and 100 % of its nominal value.
fn retry_wait(status: u16, headers: &HeaderMap, retry: u32, jitter: f64) -> Option<Duration> {
    let should_retry = headers
        .get(SHOULD_RETRY)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().eq_ignore_ascii_case("true"));
    let retryable = should_retry.unwrap_or(matches!(status, 429 | 502 | 503 | 504));
    if !retryable {
        return None;
    }
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(secs) = retry_after {
        return Some(Duration::from_secs(secs));
    }
    let nominal = BACKOFF_BASE
        .saturating_mul(1 << retry.min(16))
        .min(BACKOFF_MAX);
    Some(nominal.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0))
}

/// A fresh `Idempotency-Key` for one create: 32 characters of `[a-z0-9]`, the same on every
/// retry of that create.
pub(super) fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub(super) fn check_id(sandbox_id: &str) -> Result<()> {
    if sandbox_id.trim().is_empty() {
        return Err(Error::invalid_argument("the sandbox id must not be empty"));
    }
    if sandbox_id.contains(['/', '?', '#', '\0']) || sandbox_id.chars().any(char::is_whitespace) {
        return Err(Error::invalid_argument(format!(
            "the sandbox id '{sandbox_id}' contains characters an id cannot have"
        )));
    }
    Ok(())
}

/// Whole seconds, rounded up, that fit the API's int32.
pub(super) fn timeout_secs(timeout: Duration, what: &str) -> Result<i32> {
    let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    if secs == 0 {
        return Err(Error::invalid_argument(format!(
            "{what} must be at least 1 second, got {timeout:?}"
        )));
    }
    i32::try_from(secs).map_err(|_| {
        Error::invalid_argument(format!(
            "{what} of {secs} s does not fit: at most {} s",
            i32::MAX
        ))
    })
}

/// Maps a control-plane failure as E2B's SDKs do (`docs/control-plane.md`); `not_found` is
/// the message for a 404.
pub(crate) async fn api_error(
    err: e2b_api::Error<types::Error>,
    what: &str,
    not_found: Option<String>,
) -> Error {
    use e2b_api::Error as E;
    let (status, message) = match err {
        E::ErrorResponse(response) => {
            let status = response.status().as_u16();
            (status, response.into_inner().message)
        }
        E::UnexpectedResponse(response) => {
            let status = response.status().as_u16();
            let body = response.bytes().await.unwrap_or_default();
            (status, error::body_message(&body))
        }
        E::CommunicationError(e) | E::ResponseBodyError(e) | E::InvalidUpgrade(e) => {
            return error::from_reqwest(what, e);
        }
        E::InvalidRequest(message) | E::Custom(message) => {
            return Error::invalid_argument(format!("{what}: {message}"));
        }
        E::InvalidResponsePayload(_, e) => {
            return Error::sandbox(format!("{what}: the API answered unexpected JSON: {e}"));
        }
    };
    if status == 404
        && let Some(text) = not_found
    {
        return Error::NotFound(Context::new(text).status(404));
    }
    error::from_api_status(status, &message)
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn which_answers_are_retried() {
        let none = HeaderMap::new();
        for status in [429, 502, 503, 504] {
            assert!(retry_wait(status, &none, 0, 0.0).is_some(), "{status}");
        }
        for status in [400, 401, 404, 409, 500] {
            assert!(retry_wait(status, &none, 0, 0.0).is_none(), "{status}");
        }
        let yes = headers(&[("should-retry", "true")]);
        assert!(retry_wait(500, &yes, 0, 0.0).is_some());
        let no = headers(&[("should-retry", "false")]);
        assert!(retry_wait(503, &no, 0, 0.0).is_none());
    }

    #[test]
    fn waits_follow_retry_after_else_backoff_with_jitter() {
        let after = headers(&[("retry-after", "7")]);
        assert_eq!(
            retry_wait(503, &after, 0, 0.0),
            Some(Duration::from_secs(7))
        );
        let date = headers(&[("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT")]);
        assert_eq!(
            retry_wait(503, &date, 0, 0.0),
            Some(Duration::from_millis(50))
        );
        let none = HeaderMap::new();
        assert_eq!(
            retry_wait(503, &none, 0, 0.0),
            Some(Duration::from_millis(50))
        );
        assert_eq!(
            retry_wait(503, &none, 2, 1.0),
            Some(Duration::from_millis(400))
        );
        assert_eq!(retry_wait(503, &none, 20, 1.0), Some(BACKOFF_MAX));
    }

    #[test]
    fn idempotency_keys_are_valid_and_fresh() {
        let key = idempotency_key();
        assert!((1..=255).contains(&key.len()));
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        );
        assert_ne!(key, idempotency_key());
    }

    #[test]
    fn timeouts_are_whole_seconds_that_fit() {
        assert_eq!(timeout_secs(Duration::from_millis(1500), "t").unwrap(), 2);
        assert_eq!(timeout_secs(Duration::from_secs(300), "t").unwrap(), 300);
        let e = timeout_secs(Duration::ZERO, "the sandbox timeout").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the sandbox timeout must be at least 1 second, got 0ns"
        );
        let e = timeout_secs(Duration::from_secs(1 << 40), "t").unwrap_err();
        assert!(e.is_invalid_argument());
    }

    #[test]
    fn ids_are_checked() {
        assert!(check_id("").unwrap_err().is_invalid_argument());
        assert!(check_id("a/b").unwrap_err().is_invalid_argument());
        assert!(check_id("i1234abcd").is_ok());
    }
}
