"""The gateway's own gRPC services (REST through Envoy's transcoder): thin over the core."""
