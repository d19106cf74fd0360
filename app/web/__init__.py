"""The browser front-end's page routes (templates/ + static/); every number on a page comes from /api."""
