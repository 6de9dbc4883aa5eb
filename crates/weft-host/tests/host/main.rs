//! A real host on 127.0.0.1:0 in the test's process, driven as services,
//! callers, tools and browsers drive it: over the wire and over HTTP.
//! One binary, so that the workspace links one instead of five.

mod browser;
mod echo;
mod events;
mod gateway;
mod registry;
mod wire_auth;
