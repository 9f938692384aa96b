use redisx::{Error, RedisX, idempotent};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ChargeRequest {
    idempotency_key: String,
    amount: u64,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    id: u64,
}

#[derive(Serialize, Deserialize)]
struct AppError {
    code: String,
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        Self {
            code: error.code().to_string(),
        }
    }
}

#[idempotent(
    key = "payment:{req.idempotency_key}",
    ttl = "24h",
    lock_ttl = "30s",
    wait = "60s",
    fingerprint = [req],
    record_errors = true,
    runtime = rx
)]
async fn charge(rx: &RedisX, req: ChargeRequest, attempt: u32) -> Result<Receipt, AppError> {
    let _ = attempt;
    Ok(Receipt { id: req.amount })
}

// Every argument is fingerprinted by default: `note` too.
#[idempotent(key = "order:{id}")]
async fn order(id: u64, note: String) -> Result<String, Error> {
    Ok(format!("{id}: {note}"))
}

// `record_errors = false` is the default; no argument is compared with `fingerprint = []`.
#[idempotent(key = "job:{name}", fingerprint = [], record_errors = false)]
async fn job(name: String, started: std::time::Instant) -> Result<(), Error> {
    let _ = (name, started);
    Ok(())
}

// Parameters named like the expansion's own locals; a destructured parameter is left out of
// the default fingerprint.
#[idempotent(key = "{__redisx_fp}:{__redisx_call}", ttl = "1h")]
async fn internals(
    __redisx_fp: u64,
    __redisx_call: u64,
    (a, b): (u64, std::time::Instant),
) -> Result<u64, Error> {
    let _ = b;
    Ok(__redisx_fp + __redisx_call + a)
}

fn assert_send<T: Send>(_: T) {}

fn main() {
    let _ = |receipt: Receipt, error: AppError| (receipt.id, error.code);
    let _ = |rx: &RedisX| {
        let req = ChargeRequest {
            idempotency_key: String::from("k"),
            amount: 1,
        };
        assert_send(charge(rx, req, 1));
    };
    assert_send(order(1, String::new()));
    assert_send(job(String::new(), std::time::Instant::now()));
    assert_send(internals(1, 2, (3, std::time::Instant::now())));
}
