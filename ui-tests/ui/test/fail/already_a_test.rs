#[redisx::test]
#[tokio::test]
async fn twice() {}

fn main() {}
