use redisx::cached;

#[cached(key = "user:{id}")]
async fn user(id: u64) -> u64 {
    if id == 0 {
        return String::from("none");
    }
    id.to_string()
}

#[derive(Debug)]
struct AppError;

impl From<std::fmt::Error> for AppError {
    fn from(_: std::fmt::Error) -> Self {
        AppError
    }
}

#[cached(key = "user:{id}")]
async fn fallible(id: u64) -> Result<u64, AppError> {
    let n: u32 = "1".parse()?;
    Ok(id + u64::from(n))
}

fn main() {
    let _ = user(1);
    let _ = fallible(1);
}
