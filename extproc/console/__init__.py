"""The web console: pages served by every worker under /console, behind the admin token."""
