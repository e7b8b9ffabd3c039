"""extproc: an LLM gateway that plugs into Envoy through the ext_proc gRPC API."""

__version__ = "0.1.0"
