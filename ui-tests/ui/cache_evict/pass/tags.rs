use redisx::cache_evict;

#[cache_evict(tags = ["users", "org:{org}"])]
async fn reset_org(org: String) -> Result<usize, String> {
    Ok(org.len())
}

#[cache_evict(keys = ["user:{id}"], tags = ["users"])]
async fn delete_user(id: u64) -> u64 {
    id
}

fn main() {
    let _ = reset_org(String::new());
    let _ = delete_user(1);
}
