"""Ingest: protocol adapters (C-STORE, STOW-RS) and the pipeline they share."""
