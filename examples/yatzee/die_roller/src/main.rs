//! Serves the die roller; `WEFT_HOST` says where the host is.

#[tokio::main]
async fn main() -> weft::Result<()> {
    weft::serve(die_roller::DieRoller).await
}
