"""Talking to registries: hosts configuration, credentials and authentication."""
