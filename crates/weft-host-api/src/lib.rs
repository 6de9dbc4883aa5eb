//! The weft host's API, defined once: what services and clients send the
//! host over the wire ([`wire`]), and what tools send and read over HTTP
//! under `/api/v1` ([`deployments`], [`events`], [`hosts`], [`tokens`], and the route
//! table in [`routes`]). The host implements these types, the SDK and the
//! CLI speak them, and the host's OpenAPI document and its 404 hints are
//! generated from them.

pub mod deployments;
pub mod events;
pub mod hosts;
pub mod routes;
pub mod tokens;
pub mod wire;
