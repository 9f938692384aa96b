// `crate = "..."` replaces `::redisx` in the expansion.
extern crate redisx as rx;

#[allow(unused_imports)]
use std as redisx;

#[rx::stream_consumer(crate = "rx", stream = "jobs", group = "workers", concurrency = 2)]
async fn job(msg: rx::streams::Message<u64>) -> Result<(), rx::Error> {
    let _ = msg.payload();
    Ok(())
}

fn main() {
    let _ = job;
}
