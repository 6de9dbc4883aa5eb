//! Tokens: what `/api/v1/tokens` takes and shows.
