"""`~/.config/chat/config.toml`: what a user sets once instead of typing it every time.

Read with tomllib; every key is optional, and options and environment
variables given on the command line win over the file. A mistake in the
file stops `chat` with a message naming the key, never a traceback.

    server = "chat.example.org:7700"
    user = "alice"
    tls = true
    ca = "/etc/ssl/team-ca.pem"
    line = false              # true: the line mode instead of the full screen
    notify = true             # desktop notifications for mentions and direct messages
    highlights = ["deploy", "oncall"]   # words that call you, besides your name

    [colours]                 # prompt_toolkit style strings, per part of the screen
    mention = "bold fg:ansired"

    [keys]                    # an action's keys, replacing its defaults
    next_active = ["escape a", "f2"]
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.styles import Style

# the parts of the screen a colour can be set for, and their defaults
COLOURS: Mapping[str, str] = {
    "sidebar": "",
    "current": "reverse bold",
    "unread": "bold",
    "mention": "bold fg:ansired",
    "topic": "reverse",
    "status": "reverse",
    "marker": "fg:ansired",
    "day": "fg:ansibrightblack",
    "loading": "fg:ansiyellow",
    "question": "bold fg:ansiyellow",
}

# what each key does on the full screen, and its default keys (prompt_toolkit's names)
KEYS: Mapping[str, tuple[str, ...]] = {
    "scroll_up": ("pageup",),
    "scroll_down": ("pagedown",),
    "previous_conversation": ("escape up", "c-p"),
    "next_conversation": ("escape down", "c-n"),
    "next_active": ("escape a",),
    "newline": ("escape enter",),
    "toggle_sidebar": ("escape l",),
    "help": ("f1",),
    "redraw": ("c-l",),
}


class SettingsError(Exception):
    """The settings file cannot be used; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Settings:
    server: str | None = None
    user: str | None = None
    tls: bool = False
    ca: str | None = None
    line: bool = False
    notify: bool = False
    highlights: tuple[str, ...] = ()
    colours: Mapping[str, str] = field(default_factory=lambda: dict(COLOURS))
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(KEYS))
    path: Path | None = None  # the file read, if any

    def style(self) -> Style:
        return Style.from_dict(dict(self.colours))


def settings_path(env: Mapping[str, str]) -> Path:
    """CHAT_CONFIG, else $XDG_CONFIG_HOME/chat/config.toml, else ~/.config/chat/config.toml."""
    if env.get("CHAT_CONFIG"):
        return Path(env["CHAT_CONFIG"])
    base = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME") or "~", ".config")
    return Path(base).expanduser() / "chat" / "config.toml"


def load_settings(env: Mapping[str, str]) -> Settings:
    path = settings_path(env)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        if env.get("CHAT_CONFIG"):
            raise SettingsError(f"{path}: no such file (CHAT_CONFIG names it)") from None
        return Settings()
    except OSError as exc:
        raise SettingsError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    try:
        return _settings(data, path)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None


def _settings(data: dict[str, Any], path: Path) -> Settings:
    known = {"server", "user", "tls", "ca", "line", "notify", "highlights", "colours", "keys"}
    for key in data:
        if key not in known:
            raise SettingsError(f"unknown setting {key!r} (known: {', '.join(sorted(known))})")
    highlights = data.get("highlights", [])
    if not isinstance(highlights, list) or not all(
        isinstance(word, str) and word.strip() for word in highlights
    ):
        raise SettingsError("highlights must be a list of words")
    return Settings(
        server=_text(data, "server"),
        user=_text(data, "user"),
        tls=_flag(data, "tls"),
        ca=_text(data, "ca"),
        line=_flag(data, "line"),
        notify=_flag(data, "notify"),
        highlights=tuple(word.strip() for word in highlights),
        colours=_colours(data.get("colours", {})),
        keys=_keys(data.get("keys", {})),
        path=path,
    )


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise SettingsError(f"{key} must be a non-empty string")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise SettingsError(f"{key} must be true or false")
    return value


def _colours(table: object) -> dict[str, str]:
    if not isinstance(table, dict):
        raise SettingsError("[colours] must be a table")
    colours = dict(COLOURS)
    for name, value in table.items():
        if name not in COLOURS:
            raise SettingsError(f"unknown colour {name!r} (known: {', '.join(COLOURS)})")
        if not isinstance(value, str):
            raise SettingsError(f"colours.{name} must be a style string")
        try:
            Style.from_dict({name: value})
        except (ValueError, AssertionError) as exc:
            raise SettingsError(f"colours.{name}: {exc}") from None
        colours[name] = value
    return colours


def _keys(table: object) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise SettingsError("[keys] must be a table")
    keys = dict(KEYS)
    for action, value in table.items():
        if action not in KEYS:
            raise SettingsError(f"unknown key action {action!r} (known: {', '.join(KEYS)})")
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise SettingsError(f"keys.{action} must be a key or a list of keys")
        for name in names:
            try:
                KeyBindings().add(*name.split())(lambda event: None)
            except (ValueError, KeyError):
                raise SettingsError(f"keys.{action}: {name!r} is not a key") from None
        keys[action] = tuple(names)
    return keys
