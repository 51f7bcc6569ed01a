"""fastws.http."""
