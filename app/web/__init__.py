"""The HTML pages (the front-end engineer's; this is a minimal placeholder they take over)."""
