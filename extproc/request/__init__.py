"""The request path: the router-level exchange, each attempt, the relay, and what they share."""
