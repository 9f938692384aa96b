use redisx::idempotent;

#[idempotent(key = "job:{id}")]
async fn job(id: u64) -> u64 {
    id
}

fn main() {
    let _ = job(1);
}
