pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint(max_concurrency = 0)]
    async fn roll(&self) -> u8 {
        4
    }

    #[entrypoint(queue = 8)]
    async fn reset(&self) {}

    #[entrypoint(max_concurrency = "eight")]
    async fn pick(&self) {}
}

fn main() {}
