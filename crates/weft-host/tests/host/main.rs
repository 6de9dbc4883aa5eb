//! A real host on 127.0.0.1:0 in the test's process, driven as services,
//! callers, tools and browsers drive it: over the wire and over HTTP; the
//! versions it deploys run as child processes, this binary run again for
//! a test service. One binary, so that the workspace links one instead of
//! one per file.

mod browser;
mod cluster_deployments;
mod cluster_placement;
mod dice;
mod echo;
mod events;
mod gateway;
mod gateway_get;
mod registry;
mod wire_auth;

weft_test_support::test_services! {
    "echo" => echo::Echo,
    "whoami" => cluster_placement::WhoAmI,
}
