"""Decoding a SotW DiscoveryRequest that lists 1,003 route table names (what every RDS ACK of a scoped proxy
with one table per service carried): the upb fast path vs the field-by-field decoder, in the same run.

    .venv/bin/python bench/codec_bench.py [--names 1003] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from xds.server.codec import (
    SotwRequest,
    _decode_sotw_request,
    decode_sotw_request,
    encode_sotw_request,
)


def per_call_us(decode, raw: bytes, rounds: int) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            decode(raw)
        samples.append((time.perf_counter() - started) / rounds * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=1003)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    names = [f"outbound|svc{i:05d}.default.svc.cluster.local" for i in range(args.names)]
    raw = encode_sotw_request(
        SotwRequest(version_info="v1", resource_names=names, type_url="t", response_nonce="42")
    )
    assert decode_sotw_request(raw) == _decode_sotw_request(raw)
    fast = per_call_us(decode_sotw_request, raw, args.rounds)
    slow = per_call_us(_decode_sotw_request, raw, max(1, args.rounds // 10))
    print(
        f"{args.names} names, {len(raw)} bytes: upb {fast:.0f} us, "
        f"field decoder {slow:.0f} us ({slow / fast:.1f}x)"
    )


if __name__ == "__main__":
    main()
