"""The IRC gateway's parts: pure codec, names, text and capabilities first, state and replies after.

`chatd/dialects/irc.py` is the dialect itself: it reads lines with
`codec`, runs each command from `commands`' table (which turns it into
chatd's typed requests and dispatches them through the same handlers as the
JSON protocol), and renders events and replies with `render` and `replies`.
docs/irc.md says what maps to what.
"""
