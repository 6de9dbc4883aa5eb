//! The SDK without a real host: services with their mocks in the test mesh
//! (`weft::testing`), and a served service against a stand-in host.
//! One binary, so that the workspace links one instead of three.

mod events;
mod not_run;
mod serve_events;
