"""fastws.deflate."""
