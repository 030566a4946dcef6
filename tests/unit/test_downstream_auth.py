"""Downstream token auth (SPEC §9): HS256 JWTs with sub, rooms (``*`` prefixes) and
exp; development mode without a secret."""

from __future__ import annotations

import time

import jwt
import pytest

from n2gateway.downstream.auth import AuthError, Authenticator, Identity, issue_token

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def test_a_valid_token_names_the_user_and_its_rooms():
    identity = Authenticator(SECRET, now=lambda: 1000.0).authenticate(
        issue_token(SECRET, "42", ["staff", "tpos:*"], ttl=60, now=1000.0), None)
    assert identity == Identity(sub="42", rooms=("staff", "tpos:*"), expires=1060)
    assert identity.own_room == "user:42"


@pytest.mark.parametrize("room, allowed", [
    ("user:42", True), ("staff", True), ("tpos:shop1", True), ("tpos:", True),
    ("user:43", False), ("staff2", False), ("tpos", False), ("pancake", False),
])
def test_rooms_are_matched_exactly_or_by_a_trailing_star_prefix(room, allowed):
    identity = Identity(sub="42", rooms=("staff", "tpos:*"))
    assert identity.may_join(room) is allowed


def test_a_token_without_rooms_may_join_only_its_own_room():
    identity = Authenticator(SECRET).authenticate(issue_token(SECRET, "7"), None)
    assert identity.may_join("user:7")
    assert not identity.may_join("staff")


@pytest.mark.parametrize("make_token, message", [
    (lambda: issue_token(SECRET, "1", ttl=-10), "token expired"),
    (lambda: issue_token("another-secret-another-secret-xx", "1", ttl=60), "invalid token"),
    (lambda: jwt.encode({"rooms": ["staff"]}, SECRET, algorithm="HS256"), "invalid token"),
    (lambda: jwt.encode({"sub": "1", "rooms": "staff"}, SECRET, algorithm="HS256"),
     "rooms must be a list"),
    (lambda: jwt.encode({"sub": "1"}, SECRET * 2, algorithm="HS512"), "invalid token"),
    (lambda: "not.a.jwt", "invalid token"),
    (lambda: issue_token(SECRET, ""), "sub must be a non-empty string"),
    (lambda: issue_token(SECRET, "a\x00b"), "sub must not contain control characters"),
    (lambda: jwt.encode({"sub": "1", "exp": "soon"}, SECRET, algorithm="HS256"),
     "exp must be a number"),
    (lambda: jwt.encode({"sub": "1", "exp": float("nan")}, SECRET, algorithm="HS256"),
     "exp must be a number"),
    (lambda: None, "a token is required"),
])
def test_bad_tokens_are_refused_with_a_safe_reason(make_token, message):
    token = make_token()
    with pytest.raises(AuthError) as caught:
        Authenticator(SECRET).authenticate(token, "admin")
    assert message in str(caught.value)
    assert SECRET not in str(caught.value)
    if token:
        assert token not in str(caught.value)


def test_an_unsigned_token_is_refused():
    token = jwt.encode({"sub": "1"}, None, algorithm="none")
    with pytest.raises(AuthError):
        Authenticator(SECRET).authenticate(token, None)


def test_with_a_secret_user_id_alone_is_not_enough():
    with pytest.raises(AuthError):
        Authenticator(SECRET).authenticate(None, "1")


def test_development_mode_takes_user_id_and_allows_every_room():
    auth = Authenticator(None)
    assert auth.development
    identity = auth.authenticate(None, "9")
    assert identity.sub == "9" and identity.development
    assert identity.may_join("staff") and identity.may_join("user:1")
    with pytest.raises(AuthError, match="userId"):
        auth.authenticate(None, None)


def test_issue_token_sets_exp_from_ttl():
    claims = jwt.decode(issue_token(SECRET, "1", ttl=30, now=1000.0), SECRET,
                        algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sub": "1", "exp": 1030}
    assert abs(jwt.decode(issue_token(SECRET, "1", ttl=30), SECRET, algorithms=["HS256"])["exp"]
               - (time.time() + 30)) < 5


@pytest.mark.parametrize("user_id", ["a\x00b", "\ud800", "line\nbreak", "x" * 201])
def test_development_mode_refuses_user_ids_that_cannot_name_a_room(user_id):
    with pytest.raises(AuthError, match="userId must"):
        Authenticator(None).authenticate(None, user_id)


def test_exp_is_checked_against_the_authenticators_clock():
    token = issue_token(SECRET, "1", ttl=60, now=1000.0)
    assert Authenticator(SECRET, now=lambda: 1059.0).authenticate(token, None).expires == 1060
    with pytest.raises(AuthError, match="token expired"):
        Authenticator(SECRET, now=lambda: 1060.0).authenticate(token, None)


def test_a_refresh_keeps_the_user_and_takes_the_new_rooms_and_exp():
    auth = Authenticator(SECRET, now=lambda: 1000.0)
    current = auth.authenticate(issue_token(SECRET, "42", ["staff"], ttl=60, now=1000.0), None)
    fresh = auth.refresh(current, issue_token(SECRET, "42", ["tpos"], ttl=600, now=1000.0))
    assert fresh == Identity(sub="42", rooms=("tpos",), expires=1600)


@pytest.mark.parametrize("token, message", [
    (issue_token(SECRET, "43", ttl=600, now=1000.0), "cannot change sub"),
    (issue_token(SECRET, "42", ttl=-1, now=1000.0), "token expired"),
    (issue_token("another-secret-another-secret-xx", "42"), "invalid token"),
    (None, "needs a token"),
    (42, "needs a token"),
])
def test_a_refresh_is_refused_for_another_user_or_a_bad_token(token, message):
    auth = Authenticator(SECRET, now=lambda: 1000.0)
    current = Identity(sub="42", expires=1060)
    with pytest.raises(AuthError, match=message):
        auth.refresh(current, token)


def test_development_mode_has_nothing_to_refresh():
    auth = Authenticator(None)
    with pytest.raises(AuthError, match="development mode"):
        auth.refresh(auth.authenticate(None, "1"), issue_token(SECRET, "1"))
