"""OAuth logins: flows, the token store and refresh — the only room that touches tokens on disk."""
