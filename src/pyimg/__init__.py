"""pyimg: a daemonless container image tool with a typed library API."""

__version__ = "0.1.0"
