"""Operator commands: `chatd user ...` for accounts and `chatd backup` for the database.

They work on the database directly, so they run beside a live server; a
running server notices a disabled account within seconds and closes its
sessions.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from chatd.config import ServerConfig, UsageError, env_name
from chatd.db import backup_sqlite, check_schema, resolve_url
from chatd.errors import ChatError
from chatd.exitstatus import ExitStatus
from chatd.names import check_password, check_username
from chatd.passwords import PasswordHasher
from chatd.records import UserRecord
from chatd.store import Store, open_store

DB_HELP = "database URL (env CHATD_DB; default: SQLite in the data dir)"


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    user = commands.add_parser("user", help="manage accounts (works with the server running)")
    actions = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create an account (password from a prompt or stdin)")
    passwd = actions.add_parser("passwd", help="set an account's password")
    for parser in (add, passwd):
        parser.add_argument("name", metavar="NAME")
        parser.add_argument(
            "--bcrypt-rounds",
            type=int,
            default=None,
            help=f"bcrypt cost (env {env_name('bcrypt_rounds')}; default 12)",
        )
    actions.add_parser("list", help="list accounts")
    for action in ("disable", "enable"):
        parser = actions.add_parser(action, help=f"{action} an account")
        parser.add_argument("name", metavar="NAME")
    for parser in actions.choices.values():
        parser.add_argument("--db", help=DB_HELP)

    backup = commands.add_parser("backup", help="copy a live SQLite database to FILE")
    backup.add_argument("file", metavar="FILE")
    backup.add_argument("--db", help=DB_HELP)


def read_password(prompt_for: str, stdin: TextIO | None = None) -> str:
    """From the terminal (asked twice, never echoed), or the first line of a pipe."""
    stdin = stdin or sys.stdin
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {prompt_for}: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the passwords do not match")
    return first


def _hasher(args: argparse.Namespace, environ: Mapping[str, str]) -> PasswordHasher:
    raw = args.bcrypt_rounds or environ.get(env_name("bcrypt_rounds")) or 12
    try:
        rounds = ServerConfig(bcrypt_rounds=int(raw)).bcrypt_rounds
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return PasswordHasher(rounds)


def _new_password(args: argparse.Namespace, environ: Mapping[str, str], name: str) -> str:
    password = read_password(name)
    try:
        check_password(password)
    except ChatError as exc:
        raise UsageError(exc.message) from None
    return _hasher(args, environ).hash(password)


def _find(store: Store, name: str) -> UserRecord:
    user = store.user_by_name(name)
    if user is None:
        raise LookupError(f"there is no user {name!r}")
    return user


def _add(store: Store, args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    try:
        check_username(args.name)
    except ChatError as exc:
        raise UsageError(exc.message) from None
    if store.user_by_name(args.name) is not None:
        raise LookupError(f"the username {args.name!r} is taken")
    store.create_user(args.name, _new_password(args, environ, args.name))
    return f"created {args.name}"


def _passwd(store: Store, args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    user = _find(store, args.name)
    store.set_password_hash(user.id, _new_password(args, environ, user.username))
    return f"changed the password of {user.username}"


def _set_disabled(disabled: bool) -> Callable[[Store, argparse.Namespace, Mapping[str, str]], str]:
    def change(store: Store, args: argparse.Namespace, environ: Mapping[str, str]) -> str:
        user = _find(store, args.name)
        store.set_disabled(user.id, disabled)
        return f"{'disabled' if disabled else 'enabled'} {user.username}"

    return change


def _list(store: Store, args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    lines = []
    for user in store.users():
        created = datetime.fromtimestamp(user.created_ms / 1000, UTC).strftime("%Y-%m-%d")
        lines.append(f"{user.username:<32} {created}{'  disabled' if user.disabled else ''}")
    return "\n".join(lines) if lines else "no accounts yet"


USER_ACTIONS = {
    "add": _add,
    "passwd": _passwd,
    "disable": _set_disabled(True),
    "enable": _set_disabled(False),
    "list": _list,
}


def user_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    url = resolve_url(args.db, environ)
    check_schema(url, create_if_empty=False)
    store = open_store(url)
    try:
        print(USER_ACTIONS[args.action](store, args, environ))
    except LookupError as exc:
        print(f"chatd: {exc.args[0]}", file=sys.stderr)
        return ExitStatus.FAILURE
    finally:
        store.close()
    return ExitStatus.OK


def backup_command(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    destination = Path(args.file)
    backup_sqlite(resolve_url(args.db, environ), destination)
    print(f"backed up to {destination}")
    return ExitStatus.OK


COMMANDS = {"user": user_command, "backup": backup_command}
