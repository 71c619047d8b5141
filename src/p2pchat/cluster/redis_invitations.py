"""The pending invitations of several server nodes, in Redis.

``RedisInvitations`` implements ``stores.invitations.Invitations`` with one Lua script per
change (``lua/inv_*.lua``), so that the bounds (per sender, per recipient, per pair) are
checked and counted atomically across nodes, and exactly one caller settles each
invitation. Each invitation's hash carries a TTL a little longer than its node's timer:
if that node dies, Redis drops what it left when its time is up.
"""

from __future__ import annotations

from ..stores.invitations import Invitation, new_invitation_id, too_many
from .redis_client import RedisClient

__all__ = ["RedisInvitations"]


class RedisInvitations:
    """``Invitations`` in Redis: bounds checked and counted atomically across nodes."""

    def __init__(
        self,
        client: RedisClient,
        *,
        max_sent: int = 16,
        max_received: int = 16,
        max_per_pair: int = 2,
        grace: float = 10.0,
    ) -> None:
        self.client = client
        self.max_sent = max_sent
        self.max_received = max_received
        self.max_per_pair = max_per_pair
        self.grace = grace
        """Redis keeps an invitation this much longer than its timer: the timer ends it."""

    async def open(self, sender: str, recipient: str, *, ttl: float) -> Invitation:
        c = self.client
        invitation = Invitation(new_invitation_id(), sender, recipient)
        bound, pending = await c.run(
            "inv_open",
            [
                c.key("inv", invitation.id),
                c.key("inv", "sent", sender),
                c.key("inv", "recv", recipient),
                c.key("inv", "user", sender),
                c.key("inv", "user", recipient),
            ],
            [
                c.prefix,
                invitation.id,
                sender,
                recipient,
                int((ttl + self.grace) * 1000),
                self.max_sent,
                self.max_received,
                self.max_per_pair,
            ],
        )
        if bound != "ok":
            limit = {"pair": self.max_per_pair, "sent": self.max_sent}.get(
                str(bound), self.max_received
            )
            raise too_many(str(bound), int(pending), limit, recipient)
        return invitation

    async def get(self, invitation_id: str) -> Invitation | None:
        fields: list[str | None] = await self.client.call(
            self.client.redis.hmget(
                self.client.key("inv", invitation_id), ["sender", "recipient", "accepted"]
            )
        )
        return _invitation(invitation_id, *fields)

    async def accept(self, invitation_id: str, *, window: float) -> bool:
        answer = await self.client.run(
            "inv_accept",
            [self.client.key("inv", invitation_id)],
            [self.client.prefix, invitation_id, int(window * 1000)],
        )
        return int(answer) == 1

    async def settle(self, invitation_id: str, *, pending_only: bool = False) -> Invitation | None:
        answer = await self.client.run(
            "inv_settle",
            [self.client.key("inv", invitation_id)],
            [self.client.prefix, invitation_id, "1" if pending_only else "0"],
        )
        if not answer:
            return None
        return _invitation(invitation_id, *answer)

    async def of_user(self, name: str) -> list[Invitation]:
        flat = await self.client.run(
            "inv_of_user", [self.client.key("inv", "user", name)], [self.client.prefix]
        )
        found = (_invitation(*flat[i : i + 4]) for i in range(0, len(flat), 4))
        return [invitation for invitation in found if invitation is not None]

    async def clear(self) -> None:
        """Nothing: the invitations belong to the cluster, each user's settled as they
        leave (the rest expire in Redis)."""


def _invitation(
    invitation_id: str, sender: str | None, recipient: str | None, accepted: str | None
) -> Invitation | None:
    if not sender or not recipient:
        return None
    return Invitation(str(invitation_id), str(sender), str(recipient), accepted=accepted == "1")
