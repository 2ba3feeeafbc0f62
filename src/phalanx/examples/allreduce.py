"""A distributed all-reduce over TCP, without torch: what a gang of workers does at start-up.

Every worker reads torchrun's variables (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK) that
phalanx sets, builds a vector from its rank, and sums the vectors of all workers: rank 0 listens
on MASTER_PORT, the others connect, send their vectors and receive the sum. Each worker checks
the result against the closed form and exits non-zero if it is wrong.

    python -m phalanx.examples.allreduce [--size N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
import time

_HEADER = struct.Struct("!II")  # rank, number of floats


def _send(sock: socket.socket, rank: int, values: list[float]) -> None:
    sock.sendall(_HEADER.pack(rank, len(values)) + struct.pack(f"!{len(values)}d", *values))


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("peer closed the connection mid-message")
        chunks += chunk
    return bytes(chunks)


def _recv(sock: socket.socket) -> tuple[int, list[float]]:
    rank, count = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    return rank, list(struct.unpack(f"!{count}d", _recv_exact(sock, count * 8)))


def _connect(addr: str, port: int, timeout_s: float) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return socket.create_connection((addr, port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Group:
    """The workers of one gang, connected in a star around rank 0 (at MASTER_ADDR:MASTER_PORT)."""

    def __init__(self, rank: int, world: int, addr: str, port: int, timeout_s: float = 60) -> None:
        self.rank, self.world = rank, world
        self.peers: list[socket.socket] = []
        if world == 1:
            return
        if rank == 0:
            with socket.create_server((addr, port)) as server:
                server.settimeout(timeout_s)
                self.peers = [server.accept()[0] for _ in range(world - 1)]
        else:
            self.peers = [_connect(addr, port, timeout_s)]

    def allreduce(self, values: list[float]) -> list[float]:
        """Return the element-wise sum of ``values`` over all workers."""
        if self.world == 1:
            return values
        if self.rank != 0:
            _send(self.peers[0], self.rank, values)
            return _recv(self.peers[0])[1]
        total = list(values)
        for peer in self.peers:
            _, theirs = _recv(peer)
            total = [a + b for a, b in zip(total, theirs, strict=True)]
        for peer in self.peers:
            _send(peer, 0, total)
        return total

    def close(self) -> None:
        for peer in self.peers:
            peer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="all-reduce a vector across a phalanx gang")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    devices = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    print(
        f"rank {rank}/{world} on {os.environ.get('PHALANX_NODE', '?')} gpus [{devices}] meeting at {addr}:{port}",
        flush=True,
    )
    group = Group(rank, world, addr, port)
    for r in range(args.rounds):
        values = [float(rank + i + r) for i in range(args.size)]
        total = group.allreduce(values)
        # sum over ranks of (rank + i + r) = world*(world-1)/2 + world*(i + r)
        expected = [world * (world - 1) / 2 + world * (i + r) for i in range(args.size)]
        if total != expected:
            print(f"rank {rank}: round {r} gave a wrong sum", file=sys.stderr, flush=True)
            return 1
        print(
            f"rank {rank}: round {r} all-reduce of {args.size} floats ok (sum[0]={total[0]:g})",
            flush=True,
        )
    group.close()
    print(f"rank {rank}: done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
