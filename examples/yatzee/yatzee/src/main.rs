//! Serves the yatzee game; `WEFT_HOST` says where the host is.

#[tokio::main]
async fn main() -> weft::Result<()> {
    weft::serve(yatzee::Yatzee).await
}
