"""Composition and the user's surface: scan pipeline, config, manifest, CLI."""
