"""The /admin view: routes (view), sign-in and sessions (auth), the page (html)."""
