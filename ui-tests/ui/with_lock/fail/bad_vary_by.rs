use redisx::{Error, with_lock};

#[with_lock(key = "job", vary_by = ["tenant id"])]
async fn job() -> Result<(), Error> {
    Ok(())
}

fn main() {}
