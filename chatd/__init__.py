"""chatd: a self-hosted chat server with accounts and durable history."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chatd")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
