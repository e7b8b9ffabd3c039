"""A stand-in browser for login tests: follows the authorize redirect to the CLI's loopback listener."""

import sys

import httpx

httpx.get(sys.argv[1], follow_redirects=True, timeout=10)
