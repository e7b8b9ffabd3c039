"""The fast path: routes Envoy serves by itself, planned and published by the processor."""
