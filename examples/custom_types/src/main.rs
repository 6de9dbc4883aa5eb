//! Serves the scoreboard; `WEFT_HOST` says where the host is.

#[tokio::main]
async fn main() -> weft::Result<()> {
    weft::serve(custom_types::Scoreboard::default()).await
}
