"""Which replica an LLM request goes to: pure decisions over plain data.

Pure: no clock, I/O, threads or randomness (an import-linter contract checks it); a
round-robin turn or a hash is passed in. The gateway (``phalanx.serving.llm.gateway``) keeps
the state between requests — a ``PrefixIndex`` per service, a ``HashRing`` per set of
replicas — and asks ``choose`` once per request with the candidates that have a free slot.

The policies (``RoutingParams.policy``):

- ``round-robin``: the candidates in turn.
- ``least-outstanding``: the fewest requests in flight (ties in turn).
- ``chwbl``: consistent hashing with bounded loads over the prompt's prefix, as KubeAI
  describes it: hash the first blocks of the prompt, walk a ring of virtual nodes from there,
  and take the first replica whose load after this request stays within the bound (so a hot
  prefix spills to the next replica on the ring, never onto one replica without bound). The
  bound is ``load_factor`` × the mean load, or the mean + ``miss_cost``, whichever is larger:
  with the bare factor a light fleet (mean 0.5: bound 1) spills a prefix on its second
  request in flight, each spill lands the prefix in one more cache, and under load the
  caches thrash — the misses make requests longer, loads rise and more spill.
- ``prefix`` (the default): prefix-cache- and load-aware. ``PrefixIndex`` estimates the
  prefixes each replica holds: the chained hashes of the blocks of prompts recently sent
  there, at most ``cache_blocks`` per replica, least recently used dropped first (like the
  replica's KV cache; the gateway sets each replica's own bound from its engine's cache size
  and expires blocks by the engine's KV events: see ``PrefixIndex``). Each candidate costs
  ``load + miss_cost × (missed + prefill_weight × pending) / max_blocks``, where ``missed``
  is the number of the prompt's blocks (at most ``max_blocks``) it does not hold in a row
  from the start and ``pending`` the blocks that the requests already in flight there
  missed: the prefill work outstanding, so that of two replicas with as many requests in
  flight, the one busy with long uncached prompts costs more (Mooncake-like traffic, whose
  prompts run from a few blocks to hundreds). ``prefill_weight`` is below 1 because a
  request in flight is also counted in ``load``, and because the requests that follow a
  miss of the same prefix hit the blocks it is computing: at weight 1 a group's second
  request fled its own first one. A full miss of a prompt of ``max_blocks`` blocks or more
  weighs ``miss_cost`` queued requests, a shorter prompt's miss less in proportion (prefill
  time grows with the uncached tokens; weighing a 20-block prompt's miss like a 64-block
  one's sent conversations to a busy replica for a hit that saved less than the wait).
  The cheapest wins. A hit is thus worth at most ``miss_cost`` requests of queue: the
  chosen replica's load is never more than ``miss_cost`` (plus the least loaded one's
  weighted prefill work) above the least loaded one's, at any load — which is the whole of
  the load guard. No mean-based bound and no "everyone queues: least loaded" rule: both
  moved a prefix off its replica while that replica had free slots (a bound of mean + 1
  spills a group at its third request in flight), every move costs a full prefill there
  and evicts another group's blocks, and under overload that feedback (misses → longer
  requests → more moves) made the fleet thrash worse than round-robin.
  Free slots (``Candidate.slots``: the requests its engine runs at once, as far as the
  gateway has seen; 0 when not known): a request that finds a free slot starts at once,
  beside the others, so below ``slots`` neither the requests in flight nor their prefill
  work make it wait and the load term is 0 (``queue_cost``): the miss alone decides. From
  ``slots`` on the request queues, and the load term is the queue it would join, ``load -
  slots + 1``, plus the weighted prefill work in flight: the load guard above holds for
  that queue. Without this, half of the Mooncake replay's follow-up turns left the
  replica that held their conversation's earlier turns for one with fewer requests in
  flight, though both had free slots: a full prefill elsewhere for no wait saved, and the
  conversation's blocks stored twice, evicting others'. With ``slots`` unknown (0) the
  load term is ``load`` plus the prefill work, as above.
  Ties (equal cost) go to the least loaded, then to the replica whose index holds the
  fewest blocks (the most room: a new prefix goes where it evicts least, which spreads new
  groups evenly), then in turn; so with free slots everywhere a prefix that no replica
  holds still goes to the least loaded. ``Candidate.waiting`` (the engine's queue) is
  already part of ``load``; it is not counted twice.

Blocks: ``prompt_blocks`` cuts the prompt's bytes into ``block_chars``-byte blocks and
chains CRC-32s (the hash of block i covers blocks 0..i), so equal hashes mean equal
prefixes, whatever came after them.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "POLICIES",
    "Candidate",
    "HashRing",
    "PrefixIndex",
    "RoutingParams",
    "choose",
    "choose_chwbl",
    "choose_least_outstanding",
    "choose_prefix",
    "choose_round_robin",
    "prompt_blocks",
    "queue_cost",
]

POLICIES = ("prefix", "chwbl", "least-outstanding", "round-robin")


@dataclass(frozen=True, slots=True)
class RoutingParams:
    """A service's routing settings (``spec.llm.routing``; see the module docstring)."""

    policy: str = "prefix"
    block_chars: int = 128
    max_blocks: int = 64
    cache_blocks: int = 4096
    load_factor: float = 1.25
    miss_cost: float = 4.0
    #: The weight of the prefill work in flight against the request's own miss.
    prefill_weight: float = 0.25
    #: Virtual nodes per replica on the CHWBL ring.
    ring_points: int = 64

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"routing policy must be one of {', '.join(POLICIES)}")
        if self.block_chars < 1 or self.max_blocks < 1 or self.cache_blocks < 1:
            raise ValueError("blockChars, maxBlocks and cacheBlocks must be at least 1")
        if self.load_factor < 1.0:
            raise ValueError(f"loadFactor must be at least 1, got {self.load_factor}")
        if self.miss_cost < 0.0 or self.prefill_weight < 0.0:
            raise ValueError(
                f"missCost and prefillWeight must be at least 0, got {self.miss_cost} and "
                f"{self.prefill_weight}"
            )

    @classmethod
    def from_manifest(cls, data: Mapping[str, object]) -> RoutingParams:
        """From the ``routing`` mapping of ``Route.extra["llm"]`` (camelCase keys; missing
        keys take the defaults). Raises ValueError/TypeError on a bad value."""

        def num(key: str, default: float) -> float:
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"routing.{key} must be a number, not {value!r}")
            return float(value)

        return cls(
            policy=str(data.get("policy", "prefix")),
            block_chars=int(num("blockChars", 128)),
            max_blocks=int(num("maxBlocks", 64)),
            cache_blocks=int(num("cacheBlocks", 4096)),
            load_factor=num("loadFactor", 1.25),
            miss_cost=num("missCost", 4.0),
            prefill_weight=num("prefillWeight", 0.25),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A replica that may take the request: ``key`` names it (its URL), ``load`` is its
    requests in flight (through this gateway, plus what its engine reports beyond them),
    ``waiting`` the requests its engine last said were queued (0: none, or not known),
    ``pending_blocks`` the uncached blocks of the requests in flight through this gateway,
    ``slots`` the requests its engine runs at once (0: not known)."""

    key: str
    load: float
    waiting: float = 0.0
    #: Prefill work in flight there: the uncached prompt blocks of its requests in flight.
    pending_blocks: float = 0.0
    #: How many requests its engine runs at once, as far as the gateway has seen (0: not
    #: known); fewer in flight than that, a request starts at once.
    slots: float = 0.0


def prompt_blocks(prompt: bytes, block_chars: int, max_blocks: int) -> tuple[int, ...]:
    """The chained CRC-32 of each whole ``block_chars``-byte block of ``prompt`` (at most
    ``max_blocks``; a shorter tail counts as one more block). Empty prompt: ()."""
    out: list[int] = []
    crc = 0
    end = min(len(prompt), block_chars * max_blocks)
    for start in range(0, end, block_chars):
        crc = zlib.crc32(prompt[start : start + block_chars], crc)
        out.append(crc)
    return tuple(out)


class PrefixIndex:
    """The blocks recently sent to each replica: an estimate of its prefix cache, at most
    ``capacity`` blocks per replica (or that replica's own bound, ``set_capacity``), the
    least recently sent dropped first. A data structure (``record``, ``evict``, ``expire``,
    ``forget`` change it); ``matched`` only reads.

    Each block carries a stamp: the replica's engine clock when the block was last sent
    there — the number of KV blocks that engine had stored by then, from its KV events (0
    for an engine without events). ``expire`` drops the blocks whose engine has since stored
    as many blocks as it now holds: in an LRU cache every block stored after a block's last
    use is more recent than it, so once that many were stored the block was evicted — and
    this holds whoever sent the traffic, and however the engine's blocks map onto the
    gateway's."""

    __slots__ = ("_blocks", "_capacities", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: dict[str, OrderedDict[int, int]] = {}
        self._capacities: dict[str, int] = {}

    def set_capacity(self, replica: str, blocks: int | None) -> None:
        """Bound ``replica``'s estimate by ``blocks`` (None: back to ``capacity``); blocks
        over the new bound are dropped, least recent first."""
        if blocks is None:
            self._capacities.pop(replica, None)
        else:
            self._capacities[replica] = max(1, blocks)
        held = self._blocks.get(replica)
        if held:
            self.evict(replica, len(held) - self.capacity_of(replica))

    def capacity_of(self, replica: str) -> int:
        return self._capacities.get(replica, self.capacity)

    def evict(self, replica: str, count: int) -> int:
        """Drop ``replica``'s ``count`` least recent blocks (its engine evicted as many);
        returns how many were dropped."""
        held = self._blocks.get(replica)
        dropped = 0
        while held and dropped < count:
            held.popitem(last=False)
            dropped += 1
        return dropped

    def expire(self, replica: str, clock: int, held: int) -> int:
        """Drop ``replica``'s blocks stamped at or before ``clock - held`` (its engine has
        stored ``clock`` blocks in all and holds ``held`` now); returns how many."""
        blocks = self._blocks.get(replica)
        dropped = 0
        limit = clock - held
        # Stamps never decrease along the recency order: the oldest are first.
        while blocks:
            oldest = next(iter(blocks.values()))
            if oldest > limit:
                break
            blocks.popitem(last=False)
            dropped += 1
        return dropped

    def restamp(self, replica: str, stamp: int) -> None:
        """Stamp every block ``replica`` holds with ``stamp``: they were recorded before its
        engine's clock was first read, which then read ``stamp``."""
        blocks = self._blocks.get(replica)
        if blocks:
            for block in blocks:
                blocks[block] = stamp

    def matched(self, replica: str, blocks: Sequence[int]) -> int:
        """How many of ``blocks``, from the first, ``replica`` holds in a row."""
        held = self._blocks.get(replica)
        if not held:
            return 0
        n = 0
        for block in blocks:
            if block not in held:
                break
            n += 1
        return n

    def record(self, replica: str, blocks: Sequence[int], stamp: int = 0) -> int:
        """``blocks`` were sent to ``replica`` when its engine clock read ``stamp``: they
        are its most recent, oldest dropped. Returns how many it did not hold before."""
        held = self._blocks.get(replica)
        if held is None:
            held = self._blocks[replica] = OrderedDict()
        new = 0
        for block in blocks:
            if block in held:
                held.move_to_end(block)
            else:
                new += 1
            held[block] = stamp
        capacity = self._capacities.get(replica, self.capacity)
        while len(held) > capacity:
            held.popitem(last=False)
        return new

    def forget(self, replica: str) -> None:
        """``replica`` lost its cache (restarted, or left the service)."""
        self._blocks.pop(replica, None)
        self._capacities.pop(replica, None)

    def replicas(self) -> tuple[str, ...]:
        return tuple(self._blocks)

    def size(self, replica: str) -> int:
        held = self._blocks.get(replica)
        return len(held) if held else 0


@dataclass(frozen=True, slots=True)
class HashRing:
    """A consistent-hash ring: ``points`` sorted, ``owners[i]`` the replica of
    ``points[i]``."""

    points: tuple[int, ...]
    owners: tuple[str, ...]

    @classmethod
    def build(cls, replicas: Sequence[str], points_per_replica: int) -> HashRing:
        """The ring of ``replicas``, each at ``points_per_replica`` positions (the same
        replicas always give the same ring, whatever their order)."""
        pairs = sorted(
            (_mix(f"{replica}#{i}".encode()), replica)
            for replica in set(replicas)
            for i in range(points_per_replica)
        )
        return cls(tuple(p for p, _ in pairs), tuple(o for _, o in pairs))

    def walk(self, key: int) -> list[str]:
        """The replicas from ``key`` (mixed first: see ``_mix``) round the ring, each once,
        in ring order."""
        n = len(self.points)
        if not n:
            return []
        start = bisect.bisect_left(self.points, _mix(key.to_bytes(8, "little", signed=False)))
        seen: dict[str, None] = {}
        for i in range(n):
            owner = self.owners[(start + i) % n]
            if owner not in seen:
                seen[owner] = None
        return list(seen)


def _mix(data: bytes) -> int:
    """A 64-bit hash of ``data`` for ring positions. Not CRC-32: a CRC is linear, so the
    points of ``url#0`` … ``url#63`` (and prefix keys that differ in a few bytes) are
    correlated rather than spread over the ring."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def _bound(candidates: Sequence[Candidate], load_factor: float, slack: float = 0.0) -> float:
    """The most load one replica may have after taking this request: ``load_factor`` × the
    mean load including this request, rounded up (CHWBL's bound: the least loaded replica
    is always within it), or the mean plus ``slack``, whichever is larger."""
    mean = (sum(c.load for c in candidates) + 1.0) / len(candidates)
    return max(1.0, float(math.ceil(load_factor * mean - 1e-9)), math.ceil(mean + slack - 1e-9))


def choose_round_robin(candidates: Sequence[Candidate], turn: int) -> Candidate:
    return candidates[turn % len(candidates)]


def choose_least_outstanding(candidates: Sequence[Candidate], turn: int) -> Candidate:
    """The least loaded; ties go round from ``turn``."""
    n = len(candidates)
    start = turn % n
    best = candidates[start]
    for i in range(1, n):
        c = candidates[(start + i) % n]
        if c.load < best.load:
            best = c
    return best


def choose_chwbl(
    candidates: Sequence[Candidate],
    blocks: Sequence[int],
    ring: HashRing,
    load_factor: float,
    turn: int,
    slack: float = 0.0,
) -> Candidate:
    """The first replica round ``ring`` from the prefix's hash (the last of ``blocks``)
    whose load + 1 stays within the bound (``load_factor`` × the mean, or the mean +
    ``slack``, whichever is larger); no prefix, or none within it: least loaded."""
    if not blocks:
        return choose_least_outstanding(candidates, turn)
    by_key = {c.key: c for c in candidates}
    bound = _bound(candidates, load_factor, slack)
    for key in ring.walk(blocks[-1]):
        c = by_key.get(key)
        if c is not None and c.load + 1.0 <= bound:
            return c
    return choose_least_outstanding(candidates, turn)


def queue_cost(candidate: Candidate, per_pending_block: float) -> float:
    """What waiting at ``candidate`` costs a request, in queued requests (the prefix
    policy's load term): ``load + per_pending_block × pending_blocks`` when its slots are
    not known; 0 while it has a free slot (fewer than ``slots`` in flight); else the queue
    the request would join, ``load - slots + 1``, plus the weighted prefill work in
    flight."""
    c = candidate
    if c.slots <= 0.0:
        return c.load + per_pending_block * c.pending_blocks
    if c.load < c.slots:
        return 0.0
    return c.load - c.slots + 1.0 + per_pending_block * c.pending_blocks


def choose_prefix(
    candidates: Sequence[Candidate],
    blocks: Sequence[int],
    index: PrefixIndex,
    params: RoutingParams,
    turn: int,
) -> Candidate:
    """The cheapest candidate: ``queue_cost`` (the load, or with ``slots`` known the
    queue beyond them, plus ``miss_cost × prefill_weight × pending / max_blocks``) +
    ``miss_cost × missed / max_blocks``; ties to the least loaded, then the fewest blocks
    held, then in turn (see the module docstring)."""
    n = len(candidates)
    if n == 1:
        return candidates[0]
    total = len(blocks)
    per_block = params.miss_cost / params.max_blocks
    weight = params.prefill_weight
    start = turn % n
    best = candidates[start]
    best_rank: tuple[float, float, int] | None = None
    for i in range(n):
        c = candidates[(start + i) % n]
        missed = total - index.matched(c.key, blocks)
        # Rounded so that equal costs reached by different float paths tie.
        cost = round(queue_cost(c, per_block * weight) + per_block * missed, 9)
        rank = (cost, c.load, index.size(c.key))
        if best_rank is None or rank < best_rank:
            best, best_rank = c, rank
    return best


def choose(
    params: RoutingParams,
    candidates: Sequence[Candidate],
    blocks: Sequence[int],
    *,
    turn: int,
    index: PrefixIndex | None = None,
    ring: HashRing | None = None,
) -> Candidate:
    """The replica for one request under ``params.policy``. ``candidates`` must not be
    empty; ``index`` is needed by ``prefix`` and ``ring`` by ``chwbl`` (without them they
    fall back to least-outstanding)."""
    policy = params.policy
    if policy == "prefix" and index is not None:
        return choose_prefix(candidates, blocks, index, params, turn)
    if policy == "chwbl" and ring is not None:
        return choose_chwbl(candidates, blocks, ring, params.load_factor, turn, params.miss_cost)
    if policy == "round-robin":
        return choose_round_robin(candidates, turn)
    return choose_least_outstanding(candidates, turn)
