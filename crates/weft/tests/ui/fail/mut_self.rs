pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&mut self) -> u8 {
        4
    }

    #[entrypoint]
    async fn no_receiver() -> u8 {
        4
    }
}

fn main() {}
