"""fastws.ws."""
