"""Accounting: token usage read from answers, its cost, and the one usage record per request."""
