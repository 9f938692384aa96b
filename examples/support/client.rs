//! What the examples' client side shares: sending a POST whose answer may be a replay, and
//! waiting for something to happen. Shared with `#[path = "support/client.rs"] mod client;`.

// Each example uses what it needs of this module.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

/// POSTs `body` to `url` with the header `name: value` (an `Idempotency-Key`, an event id);
/// returns the status, whether the answer is a replay (`Idempotency-Replayed: true`), and the
/// body.
pub(crate) async fn post(
    c: &reqwest::Client,
    url: &str,
    (name, value): (&str, &str),
    body: String,
) -> Result<(u16, bool, String), reqwest::Error> {
    let res = c.post(url).header(name, value).body(body).send().await?;
    let replayed = res
        .headers()
        .get("idempotency-replayed")
        .is_some_and(|v| v == "true");
    Ok((res.status().as_u16(), replayed, res.text().await?))
}

/// Checks `done` every 20 ms until it holds; `OP_TIMEOUT` after 5 s.
pub(crate) async fn wait_for<F, Fut>(what: &str, mut done: F) -> redisx::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = redisx::Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done().await? {
        if tokio::time::Instant::now() > deadline {
            return Err(redisx::Error::new(
                redisx::ErrorCode::OperationTimeout,
                format!("timed out waiting for {what}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
