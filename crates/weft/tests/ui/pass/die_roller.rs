//! The tutorial's die roller, with every kind of entrypoint.

use weft::prelude::*;

#[derive(Default)]
pub struct DieRoller;

/// Rolls dice.
#[weft::service(name = "die_roller")]
impl DieRoller {
    /// Roll one die.
    #[entrypoint]
    async fn roll_die(&self) -> u8 {
        4
    }

    /// Add.
    #[entrypoint]
    async fn add(&self, ctx: &Context, a: i64, b: Option<i64>) -> weft::Result<i64> {
        let _ = ctx;
        Ok(a + b.unwrap_or(0))
    }

    #[entrypoint(name = "echo")]
    async fn echo_impl(&self, mut s: String) -> Result<String, std::fmt::Error> {
        s.push('!');
        Ok(s)
    }

    #[entrypoint(name = "get-user")]
    async fn get_user(&self, id: u64) {
        let _ = id;
    }

    fn helper(&self) {}
}

async fn caller(ctx: &Context) -> weft::Result<()> {
    let client = DieRollerClient::new(ctx);
    let _: u8 = client.roll_die().await?;
    let _: i64 = client.add(1, None).await?;
    let _: String = client.echo("hi".to_owned()).await?;
    client.get_user(7).await?;
    DieRoller.helper();
    Ok(())
}

fn main() {
    let _ = caller;
    assert_eq!(<DieRoller as weft::Service>::NAME, "die_roller");
}
