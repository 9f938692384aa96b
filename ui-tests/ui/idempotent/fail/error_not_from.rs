use redisx::idempotent;

#[idempotent(key = "job:{id}")]
async fn job(id: u64) -> Result<u64, String> {
    Ok(id)
}

// A `()` value is always recorded: the error type is the one pointed at.
#[idempotent(key = "command:{id}")]
async fn command(id: u64) -> Result<(), String> {
    let _ = id;
    Ok(())
}

fn main() {
    let _ = (job(1), command(1));
}
