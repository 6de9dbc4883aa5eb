pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&self) -> u8 {
        4
    }

    #[entrypoint(name = "roll")]
    async fn roll_again(&self) -> u8 {
        5
    }
}

fn main() {}
