"""The pure core: configuration, catalog, registry, health and resolution. No gRPC, no network."""
