use redisx::cached;

#[cached(key = "user:{id}", tags = ["users", "user:{id}", "org:{org}"])]
async fn user(id: u64, org: String) -> Result<String, String> {
    Ok(format!("{org}/{id}"))
}

#[cached(key = "all", tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])]
async fn ten_tags() -> u8 {
    10
}

#[cached(key = "none", tags = [])]
async fn no_tags() -> u8 {
    0
}

fn main() {
    let _ = user(1, String::new());
    let _ = ten_tags();
    let _ = no_tags();
}
