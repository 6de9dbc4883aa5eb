pub struct Dice;

#[weft::service]
impl Dice {
    #[entrypoint]
    async fn roll(&self) -> u8 {
        4
    }
}

fn main() {}
