"""The `chatd` command: `init-db`, `serve`, and `export` / `import` of room transcripts.

`main(argv, environ)` returns the exit status, so tests call it directly.
A user's mistake is one line on stderr and a non-zero status, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from msgspec import UnsetType, structs

from chatd import __version__, admin
from chatd.config import (
    SETTINGS,
    ServerConfig,
    UsageError,
    env_name,
    parse_switch,
    setting_type,
)
from chatd.db import DatabaseUrlError, SchemaError, check_schema, resolve_url, upgrade
from chatd.errors import ChatError
from chatd.exitstatus import ExitStatus
from chatd.names import normalize_room, parse_ts
from chatd.permissions import private_umask
from chatd.safepickle import DEFAULT_MAX_BYTES, PickleBudget
from chatd.transcript import (
    FileMeta,
    Transcript,
    TranscriptError,
    TranscriptMessage,
    dumps_transcript,
    loads_transcript,
    read_capped,
    write_atomic,
)
from chatd.transport import TlsSetupError

log = logging.getLogger("chatd")

THREAD_STACK_BYTES = 512 * 1024

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        if setting_type(setting) is bool:  # a switch: `--irc-guests`, no value
            parser.add_argument(
                f"--{setting.name.replace('_', '-')}",
                action="store_const",
                const=True,
                default=None,
                help=f"{setting.metadata['help']} (env {env_name(setting.name)}=1; default off)",
            )
            continue
        parser.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=setting_type(setting),
            default=None,
            metavar=setting_type(setting).__name__.upper(),
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

    export = commands.add_parser("export", help="write a room's transcript to a file")
    export.add_argument("--room", required=True, help="the room to export")
    export.add_argument("file", metavar="FILE", help="the transcript to write; - for stdout")
    export.add_argument("--db", help="database URL (env CHATD_DB; default: SQLite in data dir)")
    export.add_argument(
        "--since", metavar="TS", help="only messages at or after this RFC 3339 time"
    )
    export.add_argument("--until", metavar="TS", help="only messages before this RFC 3339 time")

    import_ = commands.add_parser("import", help="add a transcript's messages to a room")
    import_.add_argument("file", metavar="FILE", help="the transcript to read; - for stdin")
    import_.add_argument("--room", metavar="NAME", help="import into this room instead")
    import_.add_argument("--db", help="database URL (env CHATD_DB; default: SQLite in data dir)")
    import_.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="N",
        help=f"refuse a larger file (default {DEFAULT_MAX_BYTES})",
    )
    admin.add_parsers(commands)
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
        kind = setting_type(setting)
        try:
            values[setting.name] = parse_switch(raw) if kind is bool else kind(raw)
        except ValueError:
            raise UsageError(
                f"{env_name(setting.name)}={raw!r} is not a valid {kind.__name__}"
            ) from None
    values["db"] = resolve_url(getattr(args, "db", None), environ)
    try:
        return ServerConfig(**values)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _configure_logging(level: str) -> None:
    """Log to stderr, without alembic's INFO lines.

    Alembic says "Context impl SQLiteImpl" whenever it looks at a database, so
    those lines came with every start; chatd logs its own line for each
    migration that actually runs instead.
    """
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _init_db(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    _configure_logging("info")
    revision = upgrade(resolve_url(args.db, environ))
    print(f"database is at schema revision {revision}")
    return ExitStatus.OK


def _raise_file_limit() -> None:
    """Every connection is a file descriptor: take the hard limit, not the soft 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    from chatd.listeners import open_listeners
    from chatd.server import Server

    config = server_config(args, environ)
    _configure_logging(config.log_level)
    try:
        listeners = open_listeners(config)
    except TlsSetupError as exc:
        raise UsageError(str(exc)) from None
    try:
        check_schema(config.db, create_if_empty=True)
        _raise_file_limit()
        # why: two threads at most per client; 512 KiB of stack is plenty and 8 MiB each adds up.
        threading.stack_size(THREAD_STACK_BYTES)
        # why: blocked before any thread starts, so only sigwait below ever sees them.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        server = Server(config, listeners=listeners)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    server.start()
    # why: the tens of thousands of objects start-up leaves (SQLAlchemy, alembic, modules)
    # would be walked by every full collection; frozen, collections cost ~10-25% less CPU.
    gc.freeze()
    received = signal.sigwait(STOP_SIGNALS)
    log.info("received %s; shutting down", signal.Signals(received).name)
    server.stop()
    return ExitStatus.OK


def _room_flag(value: str) -> str:
    try:
        return normalize_room(value)
    except ChatError as exc:
        raise UsageError(f"--room {value!r}: {exc.message}") from None


def _ts_flag(flag: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_ts(value)
    except ValueError:
        raise UsageError(f"{flag} {value!r} is not an RFC 3339 timestamp") from None


def _current_db(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    """The database URL, refused unless its schema is current: we never migrate implicitly."""
    url = resolve_url(args.db, environ)
    check_schema(url, create_if_empty=False)
    return url


def _export(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """export --room NAME FILE [--since TS] [--until TS]: a snapshot, written atomically."""
    from chatd.store import open_store

    room = _room_flag(args.room)
    since, until = _ts_flag("--since", args.since), _ts_flag("--until", args.until)
    store = open_store(_current_db(args, environ))
    try:
        found = store.room_export(room, since, until)
    finally:
        store.close()
    if found is None:
        print(f"chatd: there is no room #{room}", file=sys.stderr)
        return ExitStatus.FAILURE
    record, stored = found
    transcript = Transcript(
        record.name,
        record.topic,
        time.time_ns() // 1_000_000,
        tuple(
            TranscriptMessage(
                m.id,
                m.user,
                m.text,
                m.ts_ms,
                None if isinstance(m.file, UnsetType) else FileMeta(**structs.asdict(m.file)),
                None if isinstance(m.edited, UnsetType) else parse_ts(m.edited),
            )
            for m in stored
        ),
    )
    data = dumps_transcript(transcript)
    if args.file == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        write_atomic(args.file, data)
    # why: with `-` stdout is the transcript, so the summary goes to stderr.
    summary = sys.stderr if args.file == "-" else sys.stdout
    print(f"exported {len(stored)} messages of #{record.name} to {args.file}", file=summary)
    return ExitStatus.OK


def _import(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """import FILE [--room NAME] [--max-bytes N]: all or nothing, idempotent."""
    from chatd.store import open_store

    if args.max_bytes < 1:
        raise UsageError("--max-bytes must be at least 1")
    room = None if args.room is None else _room_flag(args.room)
    # why: the file is checked in full before the database is even opened.
    try:
        transcript = loads_transcript(
            read_capped(args.file, args.max_bytes, sys.stdin.buffer),
            PickleBudget.for_size(args.max_bytes),
        )
    except TranscriptError as exc:
        print(f"chatd: {args.file}: {exc}", file=sys.stderr)
        return ExitStatus.FAILURE
    room = room or transcript.room
    store = open_store(_current_db(args, environ))
    try:
        imported, skipped = store.import_messages(
            room, transcript.topic, [(m.user, m.ts_ms, m.text) for m in transcript.messages]
        )
    finally:
        store.close()
    print(f"imported {imported} messages into #{room}, {skipped} already there")
    return ExitStatus.OK


COMMANDS = {
    "init-db": _init_db,
    "serve": _serve,
    "export": _export,
    "import": _import,
    **admin.COMMANDS,
}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        with private_umask():
            return COMMANDS[args.command](args, environ)
    except (UsageError, DatabaseUrlError) as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return ExitStatus.USAGE
    except (SchemaError, OSError) as exc:
        print(f"chatd: {exc}", file=sys.stderr)
        return ExitStatus.FAILURE
    except Exception as exc:  # an unreachable or broken database, say
        # why: driver errors append the SQL on further lines; the user gets one line.
        first = next(iter(str(exc).splitlines()), "")
        print(f"chatd: {type(exc).__name__}: {first}", file=sys.stderr)
        return ExitStatus.FAILURE
