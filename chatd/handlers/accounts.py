"""Accounts and the connection's own life: register, login, ping, quit."""

from __future__ import annotations

import logging

from chatd.commands import Request
from chatd.errors import ChatError, ErrorCode, rate_limited
from chatd.names import check_password, check_username, is_valid_username
from chatd.replies import LoggedIn, Registered, Reply
from chatd.requests import Login, Ping, Quit, Register

log = logging.getLogger(__name__)


def register(req: Request, args: Register) -> Registered:
    """register {username, password} -> {username}; does not log in."""
    services = req.services
    check_username(args.username)
    check_password(args.password)
    if services.config.registration == "closed":
        raise ChatError(ErrorCode.REGISTRATION_CLOSED, "ask the operator for an account")
    if services.store.user_by_name(args.username) is not None:
        raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken")
    wait = services.limits.registrations.take(req.session.address)
    if wait:
        raise rate_limited(wait)
    user = services.store.create_user(args.username, services.hasher.hash(args.password))
    log.info("%s: registered %s", req.session.peer, user.username)
    return Registered(user.username)


def _name_for_log(username: str) -> str:
    """A login's username as the log may show it.

    A name outside the username rules is most often a password typed into
    the wrong field (and could hold terminal escapes), so only its length is
    logged.
    """
    if is_valid_username(username):
        return username
    return f"a name that is not a valid username ({len(username)} characters)"


def login(req: Request, args: Login) -> LoggedIn:
    """login {username, password} -> {username, rooms}."""
    session = req.session
    services = req.services
    username = args.username
    if session.user is not None:
        raise ChatError(ErrorCode.ALREADY_LOGGED_IN, "this connection is already logged in")
    throttle = services.limits.failed_logins
    refusal = throttle.refusal(session.address, username)
    if refusal is not None:
        log.log(
            logging.INFO if refusal.first else logging.DEBUG,
            "%s: login as %s refused for %.0f s: %s (further refusals of this block are "
            "logged at debug level)",
            session.peer,
            _name_for_log(username),
            refusal.retry_after,
            refusal.logged_reason,
        )
        raise rate_limited(refusal.retry_after, refusal.reason)
    user = services.store.user_by_name(username) if is_valid_username(username) else None
    if not services.hasher.verify(args.password, None if user is None else user.password_hash):
        log.info(
            "%s: failed login as %s%s",
            session.peer,
            _name_for_log(username),
            " (no such account)" if user is None and is_valid_username(username) else "",
        )
        throttle.failed(session.address, username)
        raise ChatError(ErrorCode.INVALID_CREDENTIALS, "wrong username or password")
    assert user is not None
    throttle.succeeded(session.address, username)
    if user.disabled:
        raise ChatError(ErrorCode.ACCOUNT_DISABLED, "this account is disabled")
    session.user = user
    services.hub.connect(user.username, session)
    log.info("%s: logged in as %s", session.peer, user.username)
    return LoggedIn(user.username, services.store.memberships_of(user.id))


def ping(req: Request, args: Ping) -> Reply:
    """ping -> {}."""
    return Reply()


def quit_(req: Request, args: Quit) -> Reply:
    """quit -> {}; then the server closes the connection.

    The user is offline for everyone once this reply is out, not only when
    the connection has finished closing.
    """
    session = req.session
    session.quitting = True
    if session.user is not None:
        req.services.hub.disconnect(session.user.username, session)
    return Reply()
