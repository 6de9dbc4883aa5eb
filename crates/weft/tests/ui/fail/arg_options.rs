pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint(get)]
    async fn roll(&self, version: u8) -> u8 {
        version
    }

    #[entrypoint(post)]
    async fn reset(&self) {}

    #[entrypoint]
    async fn pick(&self, #[arg(fallback = 3)] n: u8) -> u8 {
        n
    }
}

pub struct Coins;

#[weft::service(name = "coins")]
impl Coins {
    #[entrypoint]
    async fn flip(&self, #[arg(default = 1.5)] times: u8, #[arg(example = -1)] bias: u8) -> u8 {
        times + bias
    }
}

fn main() {}
