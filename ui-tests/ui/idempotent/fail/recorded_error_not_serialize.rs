use redisx::idempotent;

struct AppError {
    code: String,
}

impl From<redisx::Error> for AppError {
    fn from(error: redisx::Error) -> Self {
        Self {
            code: error.code().to_string(),
        }
    }
}

// With `record_errors = true` an `Err` is recorded and replayed too, so `AppError` must be
// serializable.
#[idempotent(key = "payment:{id}", record_errors = true)]
async fn charge(id: u64) -> Result<u64, AppError> {
    if id == 0 {
        return Err(AppError {
            code: String::from("zero"),
        });
    }
    Ok(id)
}

fn main() {
    let _ = charge(1);
}
