"""Shared state across processes and replicas (`state.redis`): health today, the edge that syncs it."""
