"""Path patterns and the route table, with strings alone."""

from __future__ import annotations

import pytest

from fastws.http.routing import Params, Route, Router


def test_static_route_matches_only_itself():
    route = Route("/rooms", "target")
    assert route.is_static
    assert route.match("/rooms") == {}
    assert route.match("/rooms/") is None
    assert route.match("/room") is None


def test_params_match_one_segment_each_and_are_unquoted():
    route = Route("/chat/:room/:user", "t")
    assert route.match("/chat/general/alice") == {"room": "general", "user": "alice"}
    assert route.match("/chat/caf%C3%A9/bob%20b") == {"room": "café", "user": "bob b"}
    assert route.match("/chat/general") is None
    assert route.match("/chat//alice") is None            # a param is never empty
    assert route.match("/chat/a/b/c") is None


def test_params_allow_attribute_access():
    params = Route("/chat/:room", "t").match("/chat/general")
    assert isinstance(params, Params)
    assert params.room == "general"
    with pytest.raises(AttributeError, match="no route parameter named 'nope'"):
        params.nope


def test_trailing_star_matches_the_rest():
    route = Route("/files/*", "t")
    assert route.match("/files/a/b/c.txt") == {"*": "a/b/c.txt"}
    assert route.match("/files/") == {"*": ""}


@pytest.mark.parametrize("pattern, message", [
    ("rooms", "must start with '/'"),
    ("/a/:x/:x", "uses parameter 'x' twice"),
    ("/a/b:c", "bad segment"),
    ("/a/*/b", "bad segment"),
    ("/a/:1x", "bad segment"),
])
def test_bad_patterns_are_refused_at_registration(pattern, message):
    with pytest.raises(ValueError, match=message):
        Route(pattern, "t")


def test_resolve_returns_every_kind_routed_at_a_path():
    router: Router[str] = Router()
    router.add("GET", "/chat/:room", "get-room")
    router.add("WS", "/chat/:room", "ws-room")
    router.add("POST", "/chat/lobby", "post-lobby")
    found = router.resolve("/chat/lobby")
    assert set(found) == {"GET", "WS", "POST"}
    assert found["WS"] == ("ws-room", {"room": "lobby"})
    assert found["POST"] == ("post-lobby", {})
    assert router.resolve("/nowhere") == {}


def test_static_routes_win_and_patterns_go_in_registration_order():
    router: Router[str] = Router()
    router.add("GET", "/u/:name", "first")
    router.add("GET", "/u/:other", "second")
    router.add("GET", "/u/me", "static")
    assert router.resolve("/u/me")["GET"] == ("static", {})
    assert router.resolve("/u/bob")["GET"] == ("first", {"name": "bob"})


def test_a_route_cannot_be_added_twice():
    router: Router[str] = Router()
    router.add("GET", "/x", "a")
    with pytest.raises(ValueError, match="GET /x is already routed"):
        router.add("GET", "/x", "b")
    router.add("WS", "/x", "c")             # another kind at the same path is fine
