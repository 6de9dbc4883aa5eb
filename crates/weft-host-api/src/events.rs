//! Events: what `/api/v1/events` shows of topics, groups, tails and dead letters.
