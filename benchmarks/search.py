"""Search worker: a store of many messages, then one-word queries, timed one by one.

``python -m benchmarks.search DIR COUNT SECONDS``: fills an SQLite message store in DIR
with COUNT messages through its batch path (``add_many``, 10,000 per transaction, as a
burst of received messages is stored), stopping early after SECONDS of filling; then
times ``search`` for one word at a time. Bodies are 3 to 12 words drawn from 20,000 with
Zipf's law, as words of a language are: a few words are in most messages. Query words are
drawn the same way (the common ones most often: the pessimistic choice, each of them
matching hundreds of thousands of messages) and also uniformly from the vocabulary.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sys
import time
from pathlib import Path

import p2pchat
from p2pchat import Message

from .common import percentile, say

VOCABULARY = 20_000
BATCH = 10_000
QUERIES = 400


def vocabulary(rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyzéü"
    found: set[str] = set()
    while len(found) < VOCABULARY:
        found.add("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))))
    words = sorted(found)
    rng.shuffle(words)  # the rank of a word, not its spelling, says how common it is
    return words


async def main(directory: Path, count: int, seconds: float) -> None:
    rng = random.Random(22)
    words = vocabulary(rng)
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY)))
    store = p2pchat.SqliteMessageStore(directory / "search.sqlite3")
    await store.start()
    try:
        started = time.perf_counter()
        stored = 0
        while stored < count and time.perf_counter() - started < seconds:
            batch = []
            for n in range(stored, min(count, stored + BATCH)):
                other = f"friend{n % 50}"
                sender, recipient = ("me", other) if n % 2 else (other, "me")
                body = " ".join(rng.choices(words, cum_weights=weights, k=rng.randint(3, 12)))
                at = 1.7e9 + n + rng.random() * 60  # arrival order, give or take a minute
                batch.append(
                    Message(
                        id=f"{n:032x}", sender=sender, recipient=recipient, body=body, sent_at=at
                    )
                )
            await store.add_many(batch)
            stored += len(batch)
        fill = time.perf_counter() - started
        result: dict[str, float] = {"messages": stored, "fill_per_second": stored / fill}
        common = rng.choices(words, cum_weights=weights, k=QUERIES)
        for label, asked_for in (("", common), ("uniform_", rng.choices(words, k=QUERIES))):
            times = []
            for word in asked_for:
                asked = time.perf_counter()
                await store.search("me", word)
                times.append(time.perf_counter() - asked)
            result[f"{label}p50_ms"] = percentile(times, 0.5) * 1000
            result[f"{label}p95_ms"] = percentile(times, 0.95) * 1000
            result[f"{label}max_ms"] = max(times) * 1000
        say(result=result)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
