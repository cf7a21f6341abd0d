"""The `chatd` command: `init-db` and `serve`.

`main(argv, environ)` returns the exit status, so tests call it directly.
A user's mistake is one line on stderr and a non-zero status, never a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from chatd import __version__
from chatd.config import SETTINGS, ServerConfig, env_name
from chatd.db import SchemaError, check_schema, default_db_url, upgrade

log = logging.getLogger("chatd")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A bad flag or environment value: exit status 2."""


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        parser.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=type(setting.default),
            default=None,
            metavar=type(setting.default).__name__.upper(),
            help=f"{setting.metadata['help']} (env {env_name(setting.name)}"
            + (f"; default {setting.default!r})" if setting.default != "" else ")"),
        )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatd", description="chatd: a self-hosted chat server")
    parser.add_argument("--version", action="version", version=f"chatd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init_db = commands.add_parser(
        "init-db", help="create or upgrade the database to the newest schema"
    )
    init_db.add_argument("--db", help="database URL (env CHATD_DB; default: SQLite in data dir)")

    serve = commands.add_parser("serve", help="run the chat server")
    _add_setting_flags(serve)
    return parser


def server_config(args: argparse.Namespace, environ: Mapping[str, str]) -> ServerConfig:
    """Flags over environment over defaults; UsageError names the bad value."""
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        flag = getattr(args, setting.name, None)
        if flag is not None:
            values[setting.name] = flag
            continue
        raw = environ.get(env_name(setting.name))
        if raw is None or raw == "":
            continue
        kind = type(setting.default)
        try:
            values[setting.name] = kind(raw)
        except ValueError:
            raise UsageError(
                f"{env_name(setting.name)}={raw!r} is not a valid {kind.__name__}"
            ) from None
    values["db"] = values.get("db") or default_db_url()
    try:
        return ServerConfig(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _init_db(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    url = args.db or environ.get("CHATD_DB") or default_db_url()
    revision = upgrade(url)
    print(f"database is at schema revision {revision}")
    return EXIT_OK


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from chatd.server import Server

    config = server_config(args, environ)
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    check_schema(config.db, create_if_empty=True)
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    # why: blocked before any thread starts, so only sigwait below ever sees them.
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = Server(config)
    server.start()
    received = signal.sigwait(stop_signals)
    log.info("received %s; shutting down", signal.Signals(received).name)
    server.stop()
    return EXIT_OK


COMMANDS = {"init-db": _init_db, "serve": _serve}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args, environ)
    except UsageError as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (SchemaError, OSError) as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # an unreachable or broken database, say
        print(f"chatd: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
