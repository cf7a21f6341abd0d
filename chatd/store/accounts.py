"""Accounts: users, password hashes, the disabled flag."""

from __future__ import annotations

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from chatd.errors import ChatError, ErrorCode
from chatd.names import username_key
from chatd.records import (
    UserRecord,
    now_ms,
)
from chatd.store.base import (
    StoreBase,
    user_record,
    users,
)


class AccountStore(StoreBase):
    # accounts

    def create_user(self, username: str, password_hash: str) -> UserRecord:
        """A new account; username_taken when the name exists in any case."""
        try:
            with self._write() as connection:
                user_id = connection.execute(
                    insert(users)
                    .values(
                        username=username,
                        username_key=username_key(username),
                        password_hash=password_hash,
                        disabled=False,
                        created_ms=now_ms(),
                    )
                    .returning(users.c.id)
                ).scalar_one()
        except IntegrityError:
            raise ChatError(ErrorCode.USERNAME_TAKEN, "that username is taken") from None
        return UserRecord(user_id, username, password_hash, False)

    def user_by_name(self, name: str) -> UserRecord | None:
        with self._read() as connection:
            row = connection.execute(
                select(users).where(users.c.username_key == username_key(name))
            ).first()
        return None if row is None else user_record(row)

    def users(self) -> list[UserRecord]:
        """Every account, sorted by name ignoring case."""
        with self._read() as connection:
            rows = connection.execute(select(users).order_by(users.c.username_key)).all()
        return [user_record(row) for row in rows]

    def disabled_usernames(self) -> list[str]:
        with self._read() as connection:
            return list(
                connection.execute(select(users.c.username).where(users.c.disabled)).scalars()
            )

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self._write() as connection:
            connection.execute(
                update(users).where(users.c.id == user_id).values(password_hash=password_hash)
            )

    def set_disabled(self, user_id: int, disabled: bool) -> None:
        with self._write() as connection:
            connection.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))

    def first_account(self) -> tuple[int, int] | None:
        """The oldest account's id and creation time: a stamp of this database.

        Accounts are never deleted, so it stays the same for the database's life
        (IRC message ids carry a prefix made from it); None with no account yet.
        """
        with self._read() as connection:
            row = connection.execute(
                select(users.c.id, users.c.created_ms).order_by(users.c.id).limit(1)
            ).first()
        return None if row is None else (int(row[0]), int(row[1]))
