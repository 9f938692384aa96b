// `crate = "..."` replaces `::redisx` in the expansion.
extern crate redisx as rx;

#[allow(unused_imports)]
use std as redisx;

#[rx::with_lock(crate = "rx", key = "job:{id}")]
async fn job(id: u64) -> Result<u64, rx::Error> {
    Ok(id)
}

fn main() {
    let _ = job(1);
}
