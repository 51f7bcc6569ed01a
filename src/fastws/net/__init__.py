"""fastws.net."""
