"""fastws.serve."""
