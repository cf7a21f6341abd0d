"""bcrypt handling: the 72-byte limit, unknown users, and the cap on concurrent hashes."""

from __future__ import annotations

import threading

import bcrypt

from chatd import passwords
from chatd.passwords import PasswordHasher


def test_hash_and_verify():
    hasher = PasswordHasher(rounds=4)
    hashed = hasher.hash("correct horse")
    assert hashed.startswith("$2b$04$") and "correct horse" not in hashed
    assert hasher.verify("correct horse", hashed)
    assert not hasher.verify("wrong horse", hashed)


def test_overlong_password_is_a_plain_failure_not_an_exception():
    hasher = PasswordHasher(rounds=4)
    hashed = hasher.hash("x" * 72)
    assert hasher.verify("x" * 72, hashed)
    assert not hasher.verify("x" * 73, hashed)


def test_unknown_user_costs_a_real_bcrypt_check(monkeypatch):
    hasher = PasswordHasher(rounds=4)
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(secret: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(secret, hashed)

    monkeypatch.setattr(passwords.bcrypt, "checkpw", counting)
    assert not hasher.verify("whatever1", None)
    assert not hasher.verify("y" * 100, None)
    assert len(calls) == 2 and all(h.startswith(b"$2b$04$") for h in calls)


def test_no_more_hashes_at_once_than_allowed(monkeypatch):
    hasher = PasswordHasher(rounds=4, concurrency=2)
    running = 0
    peak = 0
    lock = threading.Lock()
    real = bcrypt.hashpw

    def tracking(secret: bytes, salt: bytes) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real(secret, bcrypt.gensalt(8))
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(passwords.bcrypt, "hashpw", tracking)
    threads = [threading.Thread(target=hasher.hash, args=("password1",)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert peak == 2
