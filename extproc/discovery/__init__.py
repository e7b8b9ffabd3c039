"""Live model lists from the providers, off the request path, merged into the registry."""
