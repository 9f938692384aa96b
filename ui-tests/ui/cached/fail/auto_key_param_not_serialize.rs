use redisx::cached;

struct Filter {
    limit: u32,
}

#[cached(ttl = "1m")]
async fn search(filter: Filter) -> u32 {
    filter.limit
}

fn main() {
    let _ = search(Filter { limit: 1 });
}
