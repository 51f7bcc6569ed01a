"""fastws.ops."""
