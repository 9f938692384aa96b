use redisx::cached;

#[cached(key = "user:{id}", condition = |id| *id != 0)]
async fn user(id: u64, verbose: bool) -> u64 {
    id + u64::from(verbose)
}

fn main() {
    let _ = user(1, false);
}
