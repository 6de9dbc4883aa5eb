use weft::entrypoint;

#[entrypoint]
async fn roll() -> u8 {
    4
}

fn main() {}
