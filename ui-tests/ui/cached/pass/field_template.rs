use redisx::cached;

struct User {
    id: u64,
}

struct Request {
    id: String,
    user: User,
    pair: (u8, u8),
}

#[cached(key = "req:{req.id}:{req.user.id}:{req.pair.0}", tags = ["user:{req.user.id}"])]
async fn handle(req: Request) -> String {
    req.id
}

#[cached(key = "ref:{req.id}")]
async fn by_ref(req: &Request) -> String {
    req.id.clone()
}

fn main() {
    let req = Request {
        id: String::from("r"),
        user: User { id: 1 },
        pair: (1, 2),
    };
    let _ = by_ref(&req);
    let _ = handle(req);
}
