"""The Redis backends of the server's stores: users (with their keys and presence) and the
mailbox, shared by every server node that uses the same Redis (and key prefix).

They implement the ``UserStore`` and ``Mailbox`` protocols of ``store.py`` and pass the
same shared tests as the memory and SQLite backends. Each change that touches several
keys is one Lua script (``lua/``), so it is atomic: of two first logins racing for a name
on two nodes, one key wins and both see it; of two deposits racing for the last room in a
mailbox, one is refused. The keys are listed in ``redis_client.py``.

A value that cannot be read (someone wrote garbage into Redis) is logged and treated as
missing; it never takes a server down.

Durability is Redis's own: with ``appendonly yes`` and ``appendfsync always`` a kept item
survives a power cut, as with the SQLite mailbox; with ``everysec``, up to a second of
deposits may be lost (their senders' copies stay unshipped and go at the next talk).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable

import msgspec

from ..errors import MailboxFull
from ..store import Binding, MailboxItem, UserRecord
from .redis_client import DEFAULT_PREFIX, RedisClient

__all__ = ["RedisMailbox", "RedisUserStore"]

logger = logging.getLogger(__name__)

_addresses = msgspec.json.Decoder(list[tuple[str, int]])
_item = msgspec.json.Decoder(MailboxItem)

EXPIRE_BATCH = 500


def _client(redis: RedisClient | str, prefix: str) -> RedisClient:
    return redis if isinstance(redis, RedisClient) else RedisClient(redis, prefix=prefix)


class RedisUserStore:
    """UserStore in Redis. ``redis`` is a URL (``redis://``, ``rediss://``, ``unix://``)
    or a RedisClient shared with the rest of the server."""

    def __init__(self, redis: RedisClient | str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = _client(redis, prefix)

    def __repr__(self) -> str:
        return f"<RedisUserStore {self.client!r}>"

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    async def reset_presence(self) -> None:
        await self.client.run(
            "reset_presence", [self.client.key("users", "online")], [self.client.prefix]
        )

    async def set_online(self, name: str, addresses: list[tuple[str, int]], *, now: float) -> None:
        c = self.client
        await c.run(
            "set_online",
            [c.key("names"), c.key("user", name), c.key("users", "online")],
            [name, name.casefold(), msgspec.json.encode(addresses).decode(), repr(now)],
        )

    async def set_offline(self, name: str, *, now: float) -> None:
        c = self.client
        await c.run(
            "set_offline", [c.key("user", name), c.key("users", "online")], [name, repr(now)]
        )

    async def get(self, name: str) -> UserRecord | None:
        fields: dict[str, str] = await self.client.call(
            self.client.redis.hgetall(self.client.key("user", name))
        )
        if not fields:
            return None
        try:
            return UserRecord(
                name=fields.get("name", name),
                addresses=_addresses.decode(fields.get("addresses", "[]")),
                online=fields.get("online") == "1",
                first_seen=float(fields.get("first_seen", "0")),
                last_seen=float(fields.get("last_seen", "0")),
                key=fields.get("key") or None,
                mailbox_key=fields.get("mailbox_key") or None,
                mailbox_sig=fields.get("mailbox_sig") or None,
            )
        except (ValueError, msgspec.DecodeError) as exc:
            logger.error("the Redis record of user %s cannot be read (%s); ignoring it", name, exc)
            return None

    async def online(self, *, limit: int | None = None) -> list[str]:
        end = -1 if limit is None else limit - 1
        if end < -1:
            return []
        names: list[str] = await self.client.call(
            self.client.redis.zrange(self.client.key("users", "online"), 0, end)
        )
        return names if limit != 0 else []

    async def set_mailbox_key(self, name: str, mailbox_key: str, signature: str) -> None:
        await self.client.run(
            "hset_if_exists",
            [self.client.key("user", name)],
            ["mailbox_key", mailbox_key, "mailbox_sig", signature],
        )

    async def bind_key(
        self,
        name: str,
        key: str,
        *,
        now: float,
        create: bool = True,
        mailbox: tuple[str, str] | None = None,
    ) -> Binding | None:
        mailbox_key, mailbox_sig = mailbox if mailbox is not None else ("", "")
        c = self.client
        answer = await c.run(
            "bind_key",
            [c.key("names")],
            [
                c.prefix,
                name,
                name.casefold(),
                key,
                repr(now),
                "1" if create else "0",
                mailbox_key,
                mailbox_sig,
            ],
        )
        if not answer:
            return None
        registered, bound, created, published, signature = answer
        return Binding(
            name=str(registered),
            key=str(bound),
            created=bool(int(created)),
            mailbox_key=str(published) or None,
            mailbox_sig=str(signature) or None,
        )


class RedisMailbox:
    """Mailbox in Redis: per recipient, a hash of items and their order; one expiry index
    for the sweep; running totals for the metrics."""

    def __init__(self, redis: RedisClient | str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = _client(redis, prefix)

    def __repr__(self) -> str:
        return f"<RedisMailbox {self.client!r}>"

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

    def _keys(self, recipient: str) -> list[str]:
        c = self.client
        box = ("mail", recipient)
        return [
            c.key(*box, "items"),
            c.key(*box, "order"),
            c.key(*box, "bytes"),
            c.key("mail", "expiry"),
            c.key("mail", "totals"),
            c.key(*box, "senders"),
            c.key(*box, "from"),
        ]

    async def deposit(
        self,
        item: MailboxItem,
        *,
        max_items: int | None,
        max_bytes: int | None,
        max_sender_items: int | None = None,
        max_sender_bytes: int | None = None,
    ) -> bool:
        size = len(item.sealed)
        value = f"{size}:{msgspec.json.encode(item).decode()}"
        answer = await self.client.run(
            "mail_deposit",
            [*self._keys(item.recipient), self.client.key("mail", "seq")],
            [
                item.recipient,
                item.item,
                value,
                size,
                _bound(max_items),
                _bound(max_bytes),
                repr(item.expires),
                item.sender,
                _bound(max_sender_items),
                _bound(max_sender_bytes),
            ],
        )
        if isinstance(answer, list):
            code, held = int(answer[0]), int(answer[1])
            whose = f"{item.sender}'s share of " if code in (-3, -4) else ""
            limit = "the limit per sender" if whose else "its limit"
            what = f"{held} items," if code in (-1, -3) else f"{held} bytes, near"
            raise MailboxFull(f"{whose}{item.recipient}'s mailbox holds {what} {limit}")
        return int(answer) == 1

    async def pending(
        self,
        recipient: str,
        *,
        now: float,
        limit: int,
        max_bytes: int,
        skip: Collection[str] = (),
    ) -> tuple[list[MailboxItem], bool]:
        items_key, order_key = self._keys(recipient)[:2]
        valid: list[MailboxItem] = []
        start = 0
        chunk = limit + 1
        while len(valid) <= limit:
            ids: list[str] = await self.client.call(
                self.client.redis.zrange(order_key, start, start + chunk - 1)
            )
            if not ids:
                break
            start += len(ids)
            values: list[str | None] = await self.client.call(
                self.client.redis.hmget(items_key, ids)
            )
            for item_id, value in zip(ids, values, strict=True):
                item = self._read(recipient, item_id, value)
                if item is not None and item.expires > now and item_id not in skip:
                    valid.append(item)
        page: list[MailboxItem] = []
        size = 0
        for item in valid[:limit]:
            if page and size + len(item.sealed) > max_bytes:
                return page, True
            page.append(item)
            size += len(item.sealed)
        return page, len(valid) > len(page)

    @staticmethod
    def _read(recipient: str, item_id: str, value: str | None) -> MailboxItem | None:
        if value is None:
            return None
        _, _, encoded = value.partition(":")
        try:
            item = _item.decode(encoded)
        except msgspec.DecodeError as exc:
            logger.error("mail item %s for %s is unreadable (%s); skipped", item_id, recipient, exc)
            return None
        if item.recipient != recipient or item.item != item_id:
            logger.error("mail item %s for %s is filed wrongly; skipped", item_id, recipient)
            return None
        return item

    async def remove(self, recipient: str, items: Iterable[str]) -> int:
        ids = list(items)
        if not ids:
            return 0
        return int(await self.client.run("mail_remove", self._keys(recipient), [recipient, *ids]))

    async def expire(self, now: float) -> int:
        c = self.client
        dropped = 0
        while True:
            answer = await c.run(
                "mail_expire",
                [c.key("mail", "expiry"), c.key("mail", "totals")],
                [c.prefix, repr(now), EXPIRE_BATCH],
            )
            dropped += int(answer[0])
            if int(answer[1]) < EXPIRE_BATCH:
                return dropped

    async def usage(self, recipient: str) -> tuple[int, int]:
        items_key, _, bytes_key = self._keys(recipient)[:3]
        pipe = self.client.redis.pipeline(transaction=True)
        pipe.hlen(items_key)
        pipe.get(bytes_key)
        count, used = await self.client.call(pipe.execute())
        return int(count), int(used or 0)

    async def totals(self) -> tuple[int, int]:
        """(items, bytes) kept for everyone now."""
        items, used = await self.client.call(
            self.client.redis.hmget(self.client.key("mail", "totals"), ["items", "bytes"])
        )
        return _int(items), _int(used)


def _bound(limit: int | None) -> int:
    return -1 if limit is None else limit


def _int(value: str | None) -> int:
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0
