use redisx::with_lock;

#[with_lock(key = "job")]
async fn job() -> u64 {
    1
}

fn main() {
    let _ = job();
}
