pub struct Nothing;

#[weft::service(name = "nothing")]
impl Nothing {}

fn main() {
    let spec = <Nothing as weft::Service>::spec();
    assert!(spec.entrypoints.is_empty());
}
