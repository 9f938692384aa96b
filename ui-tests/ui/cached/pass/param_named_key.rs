// Parameters named like the expansion's internals must not collide with them.
use redisx::cached;

#[cached(key = "{key}:{cache}:{spec}:{call}", ttl = "1m")]
async fn lookup(key: u64, cache: u64, spec: u64, call: u64) -> u64 {
    key + cache + spec + call
}

#[cached(key = "{__redisx_call}:{__redisx_ret}:{__redisx_enabled}", condition = |a: &u64, _b: &u64, _c: &bool| *a > 0)]
async fn internals(__redisx_call: u64, __redisx_ret: u64, __redisx_enabled: bool) -> u64 {
    __redisx_call + __redisx_ret + u64::from(__redisx_enabled)
}

#[cached]
async fn auto(key: String, cache: u64, __redisx_args_hash: u64) -> String {
    format!("{key}{cache}{__redisx_args_hash}")
}

fn main() {
    let _ = lookup(1, 2, 3, 4);
    let _ = internals(1, 2, true);
    let _ = auto(String::new(), 1, 2);
}
