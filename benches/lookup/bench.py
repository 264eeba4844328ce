#!/usr/bin/env python3
"""Open-loop load test of `GET /products/{p}/customers/{id}` on a running `c360 serve`.

Sends requests at a fixed rate (default 2,000/s) for a fixed time, each for a random
customer of the product (the ids are read first through `/products/{p}/rows?format=csv`,
10,000 a page), and measures every request's latency from the moment
it was *scheduled* (not sent), so a stalled server cannot hide its queueing delay
(no coordinated omission). Prints throughput, p50/p90/p99/p99.9/max and errors, as text
and (with --json) as one JSON line for BENCHMARKS.md.

    python3 bench.py --url http://127.0.0.1:8360 --token "$TOKEN"
"""

import argparse
import asyncio
import json
import random
import sys
import time

import aiohttp


def percentile(sorted_vals, q):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


async def run(args):
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    conn = aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    latencies = []
    ids = []
    errors = {}
    rng = random.Random(args.seed)
    sem = asyncio.Semaphore(args.connections * 4)

    async with aiohttp.ClientSession(connector=conn, headers=headers, timeout=timeout) as s:
        while len(ids) < args.max_ids:
            page = f"{args.url}/products/{args.product}/rows?format=csv&limit=10000&offset={len(ids)}"
            async with s.get(page) as r:
                if r.status != 200:
                    sys.exit(f"reading the product's ids: HTTP {r.status}: {await r.text()}")
                lines = (await r.text()).splitlines()[1:]
            if not lines:
                break
            ids.extend(line.split(",", 1)[0] for line in lines)
        if not ids:
            sys.exit("the product has no rows")

        async def one(url, scheduled, record):
            try:
                async with s.get(url) as r:
                    await r.read()
                    ok = r.status == 200
                    key = None if ok else f"HTTP {r.status}"
            except Exception as e:  # noqa: BLE001 - every failure counts as an error
                key = type(e).__name__
            finally:
                sem.release()
            if record:
                if key is None:
                    latencies.append(time.perf_counter() - scheduled)
                else:
                    errors[key] = errors.get(key, 0) + 1

        def url():
            cid = ids[rng.randrange(len(ids))]
            return f"{args.url}/products/{args.product}/customers/{cid}"

        # Warm-up (not recorded): connections open, index loaded.
        warm = []
        for _ in range(min(200, args.rate)):
            await sem.acquire()
            warm.append(asyncio.create_task(one(url(), time.perf_counter(), False)))
        await asyncio.gather(*warm)

        tasks = []
        interval = 1.0 / args.rate
        total = int(args.rate * args.duration)
        start = time.perf_counter()
        for i in range(total):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await sem.acquire()
            tasks.append(asyncio.create_task(one(url(), scheduled, True)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start

    lat = sorted(latencies)
    ms = lambda v: round(v * 1000, 3)  # noqa: E731
    return {
        "target_rate": args.rate,
        "duration_s": round(elapsed, 2),
        "requests": total,
        "ok": len(lat),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "throughput_rps": round(len(lat) / elapsed, 1),
        "p50_ms": ms(percentile(lat, 0.50)),
        "p90_ms": ms(percentile(lat, 0.90)),
        "p99_ms": ms(percentile(lat, 0.99)),
        "p999_ms": ms(percentile(lat, 0.999)),
        "max_ms": ms(lat[-1]) if lat else None,
        "customers_sampled": len(ids),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8360")
    ap.add_argument("--product", default="customer_churn_scores")
    ap.add_argument("--token", default=None, help="bearer token (read_products)")
    ap.add_argument("--max-ids", type=int, default=2_000_000, help="customer ids to sample from")
    ap.add_argument("--rate", type=int, default=2000, help="requests per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>15}: {v}")
    if res["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
