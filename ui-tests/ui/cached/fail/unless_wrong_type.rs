use redisx::cached;

#[cached(key = "name:{id}", unless = |v: &u64| *v == 0)]
async fn name(id: u64) -> String {
    id.to_string()
}

fn main() {
    let _ = name(1);
}
