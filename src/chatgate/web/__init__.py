"""The built web UI (frontend/ → web/static), served at / with SPA fallback."""
