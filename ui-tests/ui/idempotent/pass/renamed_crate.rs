// `crate = "..."` replaces `::redisx` in the expansion.
extern crate redisx as rx;

#[allow(unused_imports)]
use std as redisx;

#[rx::idempotent(crate = "rx", key = "job:{id}", ttl = "10s", fingerprint = [id])]
async fn job(id: u64) -> Result<u64, rx::Error> {
    Ok(id)
}

fn main() {
    let _ = job(1);
}
