"""The worst-case body for each route against a normal 422, through the real app in-process.

    make bench-bounds

Every string field of each route is sent at nearly 1 MB (the body limit), one field at a time;
the slowest of them is compared with a normal 422 (a 1 MB body whose first field is refused).
Cheap bounds first means none may cost more than a small multiple of that.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pagination import scratch_app  # noqa: E402

from services import PASSWORD  # noqa: E402


def main():
    with scratch_app(CORS_ORIGINS="", REDIS_URL="", RATELIMIT_ENABLED="0") as app:
        from test_bounds import HUGE, OK, ROUTES

        client = app.test_client()
        client.post("/signup", json={"username": "alice", "password": PASSWORD})

        def cost(method, path, body, repeats=7):
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                response = client.open(path, method=method, json=body)
                times.append(time.perf_counter() - started)
                assert response.status_code == 422, (path, response.get_json())
            return statistics.median(times) * 1000

        normal = cost("POST", "/posts", {"content": " " * len(HUGE)})
        print(f"normal 422 (1 MB of blank content): {normal:.1f} ms")
        for method, path, fields in ROUTES:
            worst, worst_field = 0.0, None
            for field in fields:
                body = {name: OK.get(name, PASSWORD) for name in fields}
                body[field] = HUGE if field != "email" else HUGE + "@example.com"
                ms = cost(method, path, body)
                if ms > worst:
                    worst, worst_field = ms, field
            print(
                f"{method:6} {path:30} worst {worst:7.1f} ms ({worst_field}), "
                f"{worst / normal:.1f}x a normal 422"
            )


if __name__ == "__main__":
    main()
