use redisx::cached;

fn enabled(id: &u64) -> Option<bool> {
    Some(*id != 0)
}

#[cached(key = "user:{id}", condition = enabled)]
async fn user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = user(1);
}
