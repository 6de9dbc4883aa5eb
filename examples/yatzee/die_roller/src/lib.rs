//! The die roller of the yatzee tutorial: one entrypoint that rolls a die.

/// Rolls dice.
#[derive(Debug, Default)]
pub struct DieRoller;

/// Rolls fair six-sided dice.
#[weft::service(name = "die_roller")]
impl DieRoller {
    /// Roll one die.
    #[entrypoint]
    async fn roll_die(&self) -> u8 {
        rand::random_range(1..=6)
    }
}
