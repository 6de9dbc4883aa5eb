pub struct Dice;

#[derive(Debug)]
pub struct NoDisplay;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&self) -> Result<u8, NoDisplay> {
        Ok(4)
    }
}

fn main() {}
