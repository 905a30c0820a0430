"""Pages the app serves to browsers (the resident portal)."""
