"""The web console: server-rendered pages over the gateway's own state, behind the admin token."""
