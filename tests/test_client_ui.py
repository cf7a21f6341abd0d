"""ui.py: what the terminal loop decides about the terminal it runs in."""

from __future__ import annotations

import pytest

from client.ui import terminal_reflows


@pytest.mark.parametrize(
    ("env", "reflows"),
    [
        ({"TERM": "xterm-256color"}, True),  # VTE, kitty, iTerm2 and most others
        ({"TERM": "xterm", "XTERM_VERSION": "XTerm(390)"}, False),
        ({"TERM": "linux"}, False),
        ({"TERM": "screen"}, False),
        ({"TERM": "screen-256color", "TMUX": "/tmp/tmux-0/default,1,0"}, True),
    ],
)
def test_which_terminals_reflow(env: dict[str, str], reflows: bool) -> None:
    assert terminal_reflows(env) is reflows
