pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&self, (a, b): (u8, u8)) -> u8 {
        a + b
    }
}

fn main() {}
