#[redisx::test(runtime = rx, keep_keys = "yes", config = "setup")]
async fn bad() {}

fn main() {}
