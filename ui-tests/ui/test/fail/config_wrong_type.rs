fn setup() -> u8 {
    1
}

#[redisx::test(config = setup)]
async fn wrong_config() {}

fn main() {}
