use redisx::cached;

#[cached(key = "user:{id}", vary_by = ["Tenant"])]
async fn upper_case(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", vary_by = ["tenant", "tenant"])]
async fn twice(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", vary_by = [tenant])]
async fn not_a_string(id: u64) -> u64 {
    id
}

#[cached(key = "user:{id}", vary_by = "tenant")]
async fn not_a_list(id: u64) -> u64 {
    id
}

fn main() {}
