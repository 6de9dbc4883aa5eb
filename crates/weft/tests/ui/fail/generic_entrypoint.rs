pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll<T: Default>(&self) -> u8 {
        4
    }
}

fn main() {}
