"""The op table: every op of the protocol and the one function that handles it.

Each handler is headed by its wire form, takes the request context and its
typed arguments (chatd/requests.py), and returns its result (chatd/replies.py)
or raises ChatError; the dispatcher (chatd/commands.py) does the rest. One
module per area; this table is the only place an op is bound to its handler.
"""

from __future__ import annotations

from chatd.commands import Handlers
from chatd.handlers import accounts, conversations, files, messages, rooms
from chatd.requests import (
    OPS,
    Chunk,
    Delete,
    Dm,
    DmHistory,
    Edit,
    Fetch,
    Finish,
    History,
    Join,
    Login,
    MarkRead,
    Part,
    Ping,
    Quit,
    Register,
    Rooms,
    Search,
    Send,
    Topic,
    Unread,
    Upload,
    Who,
)

HANDLERS: Handlers = {
    Register: accounts.register,
    Login: accounts.login,
    Ping: accounts.ping,
    Quit: accounts.quit_,
    Join: rooms.join,
    Part: rooms.part,
    Topic: rooms.topic,
    Who: rooms.who,
    Rooms: rooms.rooms,
    Send: messages.send,
    Dm: messages.dm,
    History: messages.history,
    DmHistory: messages.dm_history,
    Upload: files.upload,
    Chunk: files.chunk,
    Finish: files.finish,
    Fetch: files.fetch,
    MarkRead: conversations.mark_read,
    Unread: conversations.unread,
    Edit: conversations.edit,
    Delete: conversations.delete,
    Search: conversations.search,
}

assert set(HANDLERS) == set(OPS), "every op of chatd/requests.py needs its handler here"
