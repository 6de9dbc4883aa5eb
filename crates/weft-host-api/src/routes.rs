//! The routes of the host's HTTP API, for its OpenAPI document and its 404 hints.
