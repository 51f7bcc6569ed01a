"""fastws.runtime."""
