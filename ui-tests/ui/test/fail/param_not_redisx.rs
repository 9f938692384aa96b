#[redisx::test]
async fn wrong_param(rx: u64) {
    let _ = rx;
}

fn main() {}
