"""The client's file features, pure parts: safe names, sizes, hyperlinks, file lines, commands."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from client import files, render
from client.commands import COMMANDS, run_line
from client.completion import Names, complete
from client.render import PLAIN, Style
from client.ui import TerminalDisplay

LINKS = Style(colour=False, links=True)
TS = "2026-11-24T23:45:56.123Z"
OSC8 = re.compile(r"\x1b\]8;;([^\x1b]*)\x1b\\")


# -- safe names and never overwriting -----------------------------------------------


@pytest.mark.parametrize(
    ("received", "saved"),
    [
        ("../../etc/passwd", "passwd"),
        ("/etc/shadow", "shadow"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        (".bashrc", "bashrc"),
        ("...", "file-7"),
        ("..", "file-7"),
        ("", "file-7"),
        ("dir/", "file-7"),
        (None, "file-7"),
        (42, "file-7"),
        ("evil\x1b]0;title\x07name\n.txt", "evilname .txt"),
        ("bell\x07\x00.png", "bell.png"),
        ("\u202eexe.txt", "exe.txt"),
        ("  spaced out.png  ", "spaced out.png"),
        ("screen shot (2).png", "screen shot (2).png"),
        ("héllo 你好.txt", "héllo 你好.txt"),
    ],
)
def test_safe_name_reduces_a_received_name_to_one_harmless_component(
    received: Any, saved: str
) -> None:
    assert files.safe_name(received, 7) == saved


def test_safe_name_fits_the_file_system_and_keeps_the_extension() -> None:
    name = files.safe_name("é" * 300 + ".tar", 1)
    assert len(name.encode("utf-8")) <= files.NAME_MAX_BYTES and name.endswith(".tar")


def test_upload_name_stays_within_the_servers_rules() -> None:
    assert files.upload_name(Path("/tmp/shot.png")) == "shot.png"
    assert files.upload_name(Path("/tmp/odd\x07\\name")) == "odd__name"


def test_claim_never_overwrites_and_numbers_before_the_extension(tmp_path: Path) -> None:
    (tmp_path / "cat.png").write_bytes(b"first")
    (tmp_path / "cat (1).png").write_bytes(b"second")
    temp = tmp_path / ".part"
    temp.write_bytes(b"third")
    assert files.claim(temp, tmp_path, "cat.png") == tmp_path / "cat (2).png"
    assert (tmp_path / "cat.png").read_bytes() == b"first"
    assert (tmp_path / "cat (1).png").read_bytes() == b"second"
    assert (tmp_path / "cat (2).png").read_bytes() == b"third"
    assert not temp.exists()
    temp.write_bytes(b"x")
    assert files.claim(temp, tmp_path, "README").name == "README"


def test_claim_does_not_follow_a_symlink_in_the_way(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "passwd").symlink_to(outside / "victim")  # dangling: would create victim
    temp = dest / ".part"
    temp.write_bytes(b"data")
    assert files.claim(temp, dest, files.safe_name("../../etc/passwd", 1)) == dest / "passwd (1)"
    assert list(outside.iterdir()) == []


def test_destination_is_a_directory_or_a_file_path(tmp_path: Path) -> None:
    default = tmp_path / "default"
    assert files.resolve_destination(None, default) == (default, None)
    assert files.resolve_destination(str(tmp_path), default) == (tmp_path, None)
    assert files.resolve_destination(str(tmp_path / "x.bin"), default) == (tmp_path, "x.bin")
    for bad in (str(tmp_path / "nope" / "x.bin"), str(tmp_path / "nodir") + "/"):
        with pytest.raises(ValueError, match="no such directory"):
            files.resolve_destination(bad, default)


def test_default_download_dir(tmp_path: Path) -> None:
    assert files.default_download_dir(tmp_path, cwd=Path("/cwd")) == Path("/cwd")
    (tmp_path / "Downloads").mkdir()
    assert files.default_download_dir(tmp_path, cwd=Path("/cwd")) == tmp_path / "Downloads"


def test_opener_is_the_platforms_and_may_be_missing() -> None:
    found = {"xdg-open": "/usr/bin/xdg-open", "open": "/usr/bin/open"}
    assert files.opener_command("linux", found.get) == ["/usr/bin/xdg-open"]
    assert files.opener_command("darwin", found.get) == ["/usr/bin/open"]
    assert files.opener_command("linux", lambda name: None) is None
    assert files.opener_command("win32", found.get) is None


def test_cache_dir_follows_xdg() -> None:
    assert files.cache_dir({"XDG_CACHE_HOME": "/c"}, "linux") == Path("/c/chat/files")


@pytest.mark.parametrize(
    ("text", "word", "rest"),
    [
        ("a.png caption here", "a.png", "caption here"),
        ('"my shot.png"  look  at it', "my shot.png", "look  at it"),
        ("my\\ shot.png look", "my shot.png", "look"),
        ("'it''s.png'", "its.png", ""),
        ("", "", ""),
    ],
)
def test_take_word_reads_quoted_and_escaped_paths(text: str, word: str, rest: str) -> None:
    assert files.take_word(text) == (word, rest)
    if word:
        assert files.take_word(files.escape_path(word))[0] == word


def test_take_word_refuses_an_open_quote() -> None:
    with pytest.raises(ValueError):
        files.take_word('"unfinished')


# -- sizes, progress, hyperlinks ----------------------------------------------------


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (2048, "2.0 KiB"),
        (1_258_291, "1.2 MiB"),
        (1024 * 1024 - 1, "1.0 MiB"),
        (25 * 1024**2, "25.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (5 * 1024**4, "5.0 TiB"),
    ],
)
def test_human_size(size: int, text: str) -> None:
    assert render.human_size(size) == text


def test_progress_bar() -> None:
    assert render.progress_bar(0, 0) == "[####################] 100%  0 B / 0 B"
    half = render.progress_bar(1024 * 1024, 2 * 1024 * 1024)
    assert half == "[##########..........]  50%  1.0 MiB / 2.0 MiB"


def test_urls_become_underlined_osc8_links_in_a_terminal_only() -> None:
    text = "see https://example.org/a_(b)?q=1. and (http://x.test/é)"
    linked = render.linkify(text, LINKS)
    assert OSC8.findall(linked) == [
        "https://example.org/a_(b)?q=1",
        "",
        "http://x.test/%C3%A9",
        "",
    ]
    assert (
        "\x1b]8;;https://example.org/a_(b)?q=1\x1b\\\x1b[4mhttps://example.org/a_(b)?q=1"
        "\x1b[24m\x1b]8;;\x1b\\. and (" in linked
    )
    assert render.linkify(text, PLAIN) == text
    assert render.linkify("ftp://x and https:// alone", LINKS) == "ftp://x and https:// alone"


HOSTILE_LINKS = [
    "\x1b]8;;https://evil.test\x1b\\click me\x1b]8;;\x1b\\",
    "\x1b]8;;https://evil.test\x07click me\x1b]8;;\x07",
    "https://ok.test/\x1b]8;;https://evil.test\x1b\\x",
    "https://ok.test/\x1b[2J\x9b31m\x9d8;;https://evil.test\x9cx",
    "https://ok.test/\x07\x00\x7f\u202ex",
]


@pytest.mark.parametrize("hostile", HOSTILE_LINKS)
def test_hostile_text_cannot_inject_a_link_or_any_escape(hostile: str) -> None:
    message = {"id": 1, "room": "general", "user": "mallory", "text": hostile, "ts": TS}
    (line,) = render.message_lines(message, me="bob", current_room="general", style=LINKS, tz=UTC)
    targets = [url for url in OSC8.findall(line) if url]
    assert all(url.startswith("https://ok.test/") for url in targets), targets
    assert "evil.test" not in "".join(targets)
    # once our own OSC 8 and underline codes are taken out, no escape or control is left
    bare = OSC8.sub("", line).replace("\x1b[4m", "").replace("\x1b[24m", "")
    assert not any(unicodedata.category(ch) == "Cc" for ch in bare), repr(bare)
    assert "\u202e" not in bare
    for url in targets:
        assert all(33 <= ord(ch) <= 126 for ch in url)


# -- file messages ------------------------------------------------------------------


def file_message(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 9,
        "room": "general",
        "user": "alice",
        "text": "screenshot.png",
        "ts": TS,
        "file": {
            "id": 17,
            "name": "screenshot.png",
            "size": 1_258_291,
            "mime": "image/png",
            "sha256": "0" * 64,
        },
    }
    base.update(fields)
    return base


def shown(message: dict[str, Any], style: Style = PLAIN, current: str = "general") -> list[str]:
    return render.file_lines(message, me="bob", current_room=current, style=style, tz=UTC)


def test_file_message_line() -> None:
    assert shown(file_message()) == [
        "23:45 alice shared screenshot.png (1.2 MiB, image/png) - /download 17"
    ]
    assert shown(file_message(), current="random") == [
        "23:45 #general alice shared screenshot.png (1.2 MiB, image/png) - /download 17"
    ]


def test_file_message_caption_follows_when_it_says_more() -> None:
    lines = shown(file_message(text="the crash\nsee https://bugs.test/1"), style=LINKS)
    assert lines[0].endswith("- /download 17")
    assert lines[1] == "      the crash"
    assert OSC8.findall(lines[2]) == ["https://bugs.test/1", ""]


def test_file_message_in_a_direct_conversation() -> None:
    received = file_message(room=None, to="bob")
    assert shown(received)[0].startswith("23:45 *alice* shared screenshot.png")
    sent = file_message(room=None, to="alice", user="bob")
    assert shown(sent)[0].startswith("23:45 -> *alice* you shared screenshot.png")


def test_file_message_from_a_hostile_server_is_sanitized() -> None:
    message = file_message(
        user="mal\x1b[8mlory",
        text="x\x1b]0;t\x07.png",  # the name, once sanitized: no caption line
        file={"id": True, "name": "x\x1b]0;t\x07.png", "size": -5, "mime": "a\x1b[2J/b"},
    )
    (line,) = shown(message)
    assert line == "23:45 mallory shared x.png (? B, a/b) - (no file id)"


# -- the commands, as typed ---------------------------------------------------------


class FakeChat:
    def __init__(self) -> None:
        self.current: str | None = "general"
        self.topics: dict[str, str] = {}
        self.calls: list[tuple[str, Any]] = []
        self.errors: list[str] = []

    def upload(self, path: str, *, room: str | None, to: str | None, caption: str | None) -> None:
        self.calls.append(("upload", (path, room, to, caption)))

    def download(self, file_id: int, dest: str | None) -> None:
        self.calls.append(("download", (file_id, dest)))

    def open_file(self, file_id: int) -> None:
        self.calls.append(("open", file_id))

    def error(self, text: str) -> None:
        self.errors.append(text)


def typed(line: str) -> FakeChat:
    chat = FakeChat()
    run_line(chat, line)  # type: ignore[arg-type]
    return chat


def test_upload_download_open_commands() -> None:
    assert typed("/upload a.png").calls == [("upload", ("a.png", "general", None, None))]
    assert typed('/upload "my shot.png" look  here').calls == [
        ("upload", ("my shot.png", "general", None, "look  here"))
    ]
    assert typed("/upload @carol notes.txt").calls == [
        ("upload", ("notes.txt", None, "carol", None))
    ]
    assert typed("/download 17").calls == [("download", (17, None))]
    assert typed("/download 17 '/tmp/my dir'").calls == [("download", (17, "/tmp/my dir"))]
    assert typed("/open 3").calls == [("open", 3)]


def test_file_command_mistakes_are_usage_errors() -> None:
    assert typed("/upload").errors == ["usage: /upload [@USER] PATH [CAPTION]"]
    assert typed("/upload @carol").errors == ["usage: /upload [@USER] PATH [CAPTION]"]
    assert "not closed" in typed('/upload "a b').errors[0]
    assert typed("/download x").errors[0].startswith("not a file id: x")
    assert typed("/download 0").errors[0].startswith("not a file id")
    assert typed("/open").errors == ["usage: /open ID"]
    chat = FakeChat()
    chat.current = None
    run_line(chat, "/upload a.png")  # type: ignore[arg-type]
    assert chat.errors[0].startswith("you are in no room")


def test_help_lists_the_file_commands() -> None:
    syntaxes = [syntax for syntax, _ in COMMANDS.help_rows()]
    for syntax in ("/upload [@USER] PATH [CAPTION]", "/download ID [DEST...]", "/open ID"):
        assert syntax in syntaxes


def test_tab_completes_file_commands_paths_users_and_ids(tmp_path: Path) -> None:
    (tmp_path / "shot one.png").write_bytes(b"")
    (tmp_path / "shots").mkdir()
    (tmp_path / ".hidden").write_bytes(b"")
    names = Names(users=["carol", "bob"], files=["17", "3", "170"])
    base = f"{tmp_path}/sh"
    start = len("/upload ")
    assert complete("/up", names) == (0, ["/upload "])
    assert complete(f"/upload {base}", names) == (
        start,
        [f"{tmp_path}/shot\\ one.png ", f"{tmp_path}/shots/"],
    )
    assert complete("/upload @ca", names) == (start, ["@carol "])
    assert complete(f"/upload @carol {tmp_path}/.h", names)[1] == [f"{tmp_path}/.hidden "]
    assert complete(f"/upload {tmp_path}/shots/ capt", names)[1] == []
    assert complete("/download 1", names) == (10, ["17 ", "170 "])
    assert complete(f"/download 17 {base}", names)[1][-1] == f"{tmp_path}/shots/"
    assert complete("/open ", names) == (6, ["3 ", "17 ", "170 "])


def test_terminal_status_is_the_prompts_bottom_toolbar() -> None:
    with create_pipe_input() as pipe:
        display = TerminalDisplay()
        display.prompt = PromptSession(input=pipe, output=DummyOutput())
        display.status("uploading x [###] 50%")
        toolbar = display.prompt.bottom_toolbar
        assert callable(toolbar) and toolbar() == "uploading x [###] 50%"
        display.status(None)
        assert display.prompt.bottom_toolbar is None
