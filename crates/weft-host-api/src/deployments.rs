//! Deployments: what `GET /api/v1/deployments` lists and what the deploy routes take.
