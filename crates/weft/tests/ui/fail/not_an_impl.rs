#[weft::service(name = "dice")]
pub struct Dice;

pub trait Roll {
    fn roll(&self) -> u8;
}

pub struct Cup;

#[weft::service(name = "cup")]
impl Roll for Cup {
    fn roll(&self) -> u8 {
        4
    }
}

fn main() {}
