#[weft::data(rename_all = "snake_case")]
pub struct WithArguments {
    n: u8,
}

#[weft::data]
#[derive(Debug, serde::Serialize)]
pub struct DerivedTwice {
    n: u8,
}

#[weft::data]
pub union Bits {
    n: u8,
}

#[weft::data]
pub fn not_a_type() {}

fn main() {}
