"""Where files go and what they are called: path logic for /upload, /download and /open.

No network here. A name that came from the network is only ever used after
`safe_name` has reduced it to one harmless path component, and a download
never replaces an existing file: `claim` picks the first free name of
`name`, `name (1)`, `name (2)`, ... and takes it atomically.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from client.render import sanitize

# why: most file systems allow 255 bytes per name; leave room for " (NNN)".
NAME_MAX_BYTES = 240
EXTENSION_MAX_CHARS = 16
CLAIM_TRIES = 10_000
_SEPARATORS = re.compile(r"[/\\]")


def safe_name(name: object, file_id: int) -> str:
    """A received file name reduced to one harmless base name; `file-ID` if nothing is left.

    `../../etc/passwd` becomes `passwd`: only the last path component is kept,
    escape sequences and control characters go, leading dots go (no hidden
    files, no `..`), and the name is cut to fit a file system's limit.
    """
    text = sanitize(name if isinstance(name, str) else "")
    text = _SEPARATORS.split(text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Zl", "Zp"))
    text = text.strip().lstrip(".").strip()
    text = _shorten(text)
    return text or f"file-{file_id}"


def upload_name(path: Path) -> str:
    """The name a local file is announced under: its base name, within the server's rules."""
    text = "".join(
        "_" if ch in "/\\" or unicodedata.category(ch) == "Cc" else ch for ch in path.name
    )
    text = _shorten(text)
    return text if text not in ("", ".", "..") else "file"


def _shorten(name: str) -> str:
    """Cut a name to NAME_MAX_BYTES of UTF-8, keeping a short extension."""
    if len(name.encode("utf-8")) <= NAME_MAX_BYTES:
        return name
    stem, ext = os.path.splitext(name)
    if len(ext) > EXTENSION_MAX_CHARS:
        stem, ext = name, ""
    budget = NAME_MAX_BYTES - len(ext.encode("utf-8"))
    cut = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return cut.rstrip() + ext


def candidates(name: str) -> Iterator[str]:
    """`name`, then `stem (1).ext`, `stem (2).ext`, ...: the names a download may take."""
    yield name
    stem, ext = os.path.splitext(name)
    for number in range(1, CLAIM_TRIES):
        yield f"{stem} ({number}){ext}"


def claim(temp: Path, directory: Path, name: str) -> Path:
    """Move the finished `temp` to the first free name in `directory`; never overwrite.

    A hard link fails when the name exists (even as a dangling symlink), so
    taking a name and filling it is one atomic step. Where hard links are not
    supported, an exclusively created placeholder reserves the name instead.
    """
    for candidate in candidates(name):
        target = directory / candidate
        try:
            os.link(temp, target)
        except FileExistsError:
            continue
        except OSError:
            try:
                fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                continue
            os.close(fd)
            os.replace(temp, target)
            return target
        temp.unlink()
        return target
    raise FileExistsError(f"no free name for {name} in {directory}")


def default_download_dir(home: Path | None = None, cwd: Path | None = None) -> Path:
    """~/Downloads when it exists, else the current directory."""
    home = home if home is not None else Path.home()
    downloads = home / "Downloads"
    return downloads if downloads.is_dir() else (cwd if cwd is not None else Path.cwd())


def cache_dir(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> Path:
    """Where /open keeps what it downloaded: the user's cache directory, not the Downloads."""
    env = os.environ if env is None else env
    if platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "chat" / "files"


def resolve_destination(dest: str | None, default: Path) -> tuple[Path, str | None]:
    """`/download ID [DEST]` -> (directory, the name the user chose or None for the file's own).

    DEST is a directory (existing, or written with a trailing slash) or a file
    path whose directory exists. ValueError with the line to show otherwise.
    """
    if not dest:
        return default, None
    path = Path(os.path.expanduser(dest))
    if path.is_dir():
        return path, None
    if dest.endswith(("/", os.sep)):
        raise ValueError(f"no such directory: {dest}")
    if not path.parent.is_dir():
        raise ValueError(f"no such directory: {path.parent}")
    if path.name in ("", ".", ".."):
        raise ValueError(f"not a file name: {dest}")
    return path.parent, path.name


def opener_command(
    platform: str = sys.platform, which: Callable[[str], str | None] = shutil.which
) -> list[str] | None:
    """The system's "open this file" command, if there is one."""
    name = "open" if platform == "darwin" else "xdg-open"
    if platform.startswith("win"):
        return None
    found = which(name)
    return [found] if found else None


def open_with_system(path: Path) -> bool:
    """Hand a file to the desktop's opener; False when there is none.

    The opener runs detached, without our terminal, so a text-mode viewer it
    might pick can neither read the keyboard nor draw over the chat.
    """
    command = opener_command()
    if command is None:
        return False
    with contextlib.suppress(OSError):
        subprocess.Popen(
            [*command, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return True
    return False


def take_word(text: str) -> tuple[str, str]:
    """The first shell-like word of `text` and the rest, verbatim but for leading spaces.

    Single and double quotes and backslash escapes let a path hold spaces:
    `"my shot.png" look` and `my\\ shot.png look` both give `my shot.png`.
    ValueError for an unterminated quote.
    """
    text = text.lstrip()
    word: list[str] = []
    quote = ""
    index = 0
    while index < len(text):
        ch = text[index]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and index + 1 < len(text):
                index += 1
                word.append(text[index])
            else:
                word.append(ch)
        elif ch in "\"'":
            quote = ch
        elif ch == "\\" and index + 1 < len(text):
            index += 1
            word.append(text[index])
        elif ch.isspace():
            break
        else:
            word.append(ch)
        index += 1
    if quote:
        raise ValueError("a quote is not closed")
    return "".join(word), text[index:].lstrip()


def escape_path(path: str) -> str:
    """A path as `take_word` reads it back: spaces, quotes and backslashes escaped."""
    return re.sub(r"([\s\\\"'])", r"\\\1", path)
