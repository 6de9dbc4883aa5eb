//! A scoreboard whose entrypoints take and return types of its own. The
//! crate depends on weft, serde and tokio only: `#[weft::data]` derives
//! what a parameter or result needs through weft's copies of serde and
//! schemars, and `weft::JsonSchema` serves a type that derives by hand.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One player's result in a round.
#[weft::data]
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Who played.
    pub player: String,
    /// Points scored, 0 to 300.
    pub points: u16,
    /// How the round went.
    #[serde(default)]
    pub outcome: Outcome,
}

/// How a round went for one player.
#[weft::data]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Finished the round.
    #[default]
    Finished,
    /// Gave up before the end.
    Resigned,
}

/// The standing of one player, derived by hand: serde's derives with
/// schemars pointed at weft's copy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, weft::JsonSchema)]
#[schemars(crate = "weft::schemars")]
pub struct Standing {
    /// The player.
    pub player: String,
    /// Points over every round recorded.
    pub total: u32,
}

/// Keeps the scores of a game.
#[derive(Debug, Default)]
pub struct Scoreboard {
    totals: Mutex<BTreeMap<String, u32>>,
}

/// Keeps the scores of a game.
#[weft::service(name = "scoreboard")]
impl Scoreboard {
    /// Records one player's score; returns their standing.
    #[entrypoint]
    async fn record(&self, score: Score) -> Standing {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let total = totals.entry(score.player.clone()).or_default();
        if score.outcome == Outcome::Finished {
            *total += u32::from(score.points);
        }
        Standing {
            player: score.player,
            total: *total,
        }
    }

    /// Every player's standing, best first.
    #[entrypoint]
    async fn standings(&self) -> Vec<Standing> {
        let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Standing> = totals
            .iter()
            .map(|(player, total)| Standing {
                player: player.clone(),
                total: *total,
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.total));
        out
    }
}
