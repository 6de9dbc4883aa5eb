pub struct Dice;

#[weft::service(name = "Die Roller")]
impl Dice {
    #[entrypoint]
    async fn roll(&self) -> u8 {
        4
    }
}

pub struct Cup;

#[weft::service(name = "cup")]
impl Cup {
    #[entrypoint]
    async fn shakeIt(&self) -> u8 {
        4
    }

    #[entrypoint(name = "9lives")]
    async fn lives(&self) -> u8 {
        9
    }
}

fn main() {}
