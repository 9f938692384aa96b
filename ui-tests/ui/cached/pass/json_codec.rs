use redisx::cached;

#[cached(key = "a:{id}", codec = Json)]
async fn a(id: u64) -> u64 {
    id
}

#[cached(key = "b:{id}", codec = "json")]
async fn b(id: u64) -> u64 {
    id
}

#[cached(key = "c:{id}", codec = redisx::Bincode)]
async fn c(id: u64) -> u64 {
    id
}

#[cached(key = "d:{id}", codec = "bincode", mode = "l2_only")]
async fn d(id: u64) -> u64 {
    id
}

#[cached(key = "e:{id}", mode = "l1_l2")]
async fn e(id: u64) -> u64 {
    id
}

fn main() {
    let _ = (a(1), b(1), c(1), d(1), e(1));
}
