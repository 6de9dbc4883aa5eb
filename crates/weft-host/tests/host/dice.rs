//! `dice`: a service with a read-only entrypoint, argument defaults and
//! examples, and events, for the gateway's `GET` and the docs page.

/// What `roll` was asked for, as the service received it.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct Rolled {
    pub(crate) sides: u8,
    pub(crate) count: u32,
    pub(crate) label: Option<String>,
    pub(crate) weights: Option<Vec<f64>>,
    pub(crate) loaded: Option<bool>,
}

/// Someone wants dice rolled.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct RollRequested {
    /// Who asked.
    pub(crate) player: String,
}

/// Rolls dice, and says what it was asked.
#[derive(Debug, Default)]
pub(crate) struct Dice;

/// Rolls dice for the table.
#[weft::service(name = "dice", publishes("dice.rolled" = Rolled))]
impl Dice {
    /// Rolls `count` dice with `sides` sides.
    #[entrypoint(get)]
    async fn roll(
        &self,
        #[arg(default = 6, example = 20)] sides: u8,
        #[arg(default = 1)] count: u32,
        #[arg(example = "table")] label: Option<String>,
        weights: Option<Vec<f64>>,
        loaded: Option<bool>,
    ) -> Rolled {
        Rolled {
            sides,
            count,
            label,
            weights,
            loaded,
        }
    }

    /// Forgets every roll: not read-only, so POST only.
    #[entrypoint]
    async fn reset(&self, #[arg(default = "all")] what: String) -> String {
        what
    }

    /// Rolls for a player who asks.
    #[event_handler(topic = "dice.requested")]
    async fn on_request(&self, event: RollRequested) -> weft::Result<()> {
        let _ = event.player;
        Ok(())
    }
}
