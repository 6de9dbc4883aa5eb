pub struct Dice;

pub struct Cup {
    pub dice: u8,
}

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&self, sides: u8, cup: Cup) -> u8 {
        sides + cup.dice
    }
}

fn main() {}
