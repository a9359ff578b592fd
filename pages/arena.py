"""/arena on a fresh server, before app.py has run once: hand the request to app.py's navigation.

Streamlit treats the first request of a new server as a legacy `pages/` app and looks the URL path
up among the file names here; the Training Arena's path (arena) is not its file's name, so without
this file that request would show "Page not found". Not in the menu: app.py registers the pages.
"""

from pages.common import ensure_app_navigation

ensure_app_navigation()
