use std::rc::Rc;

pub struct Dice;

#[weft::service(name = "dice")]
impl Dice {
    #[entrypoint]
    async fn roll(&self) -> u8 {
        let held = Rc::new(4);
        tokio::task::yield_now().await;
        *held
    }
}

fn main() {}
