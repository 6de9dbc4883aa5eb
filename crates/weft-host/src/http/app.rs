//! What every HTTP handler shares: handles to the host's concerns and the
//! limits of requests.

use std::sync::Arc;
use std::time::Duration;

use crate::http::gateway::Gateway;
use crate::state::Shared;
use crate::supervisor::Supervisor;

/// The state of the host's router: handles, no logic.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) shared: Arc<Shared>,
    pub(crate) supervisor: Arc<Supervisor>,
    pub(crate) gateway: Gateway,
    /// The largest gateway request body, in bytes.
    pub(crate) max_body: usize,
    /// How long a client may take to send a request body.
    pub(crate) body_timeout: Duration,
}

/// Whether the connection a request came on is from this machine; set on
/// every request by the connection that serves it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerLocal(pub(crate) bool);
