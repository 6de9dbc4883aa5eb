use weft::prelude::*;

pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    fn roll(&self) -> u8 {
        4
    }
}

fn main() {}
