"""First page against a page near the end of 2,000,000 posts, through the real app in-process.

    make bench-pages                      # SQLite in a temporary directory
    make bench-pages DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test   # scratch DB there

Keyset pagination should make both pages cost the same; OFFSET pagination would make the deep
page scan two million rows.
"""

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "server"))
sys.path.insert(0, str(ROOT / "tests"))
from services import scratch_database  # noqa: E402


@contextmanager
def scratch_app(**settings):
    """The app in this process (APP_ENV=testing, plus settings) on a migrated scratch database:
    a new one on DATABASE_URL's PostgreSQL server when it names one, else SQLite; dropped after."""
    database_url, drop = scratch_database(os.environ.get("DATABASE_URL", ""), "iam_bench")
    os.environ.update(APP_ENV="testing", DATABASE_URL=database_url, **settings)
    try:
        import flask_migrate

        from app import app

        with app.app_context():
            flask_migrate.upgrade()
        yield app
    finally:
        drop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2_000_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    # the default rate limit: counted, never reached
    with scratch_app(BCRYPT_LOG_ROUNDS="4", RATELIMIT_DEFAULT="1000000 per second") as app:
        run(args, app)


def run(args, app):
    from sqlalchemy import text

    from config import db

    client = app.test_client()
    client.post("/signup", json={"username": "bench", "password": "bench-password"})

    started = time.perf_counter()
    with app.app_context():
        user_id = db.session.execute(text("SELECT id FROM users")).scalar_one()
        batch = 200_000
        for start in range(0, args.posts, batch):
            count = min(batch, args.posts - start)
            db.session.execute(
                text(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :c) "
                    "INSERT INTO posts (content, created_at, updated_at, user_id) "
                    "SELECT 'bench post', '2026-01-01 00:00:00', '2026-01-01 00:00:00', :u FROM n"
                ),
                {"c": count, "u": user_id},
            )
            db.session.commit()
            print(f"\rseeding posts: {start + count:>9,}/{args.posts:,}", end="", flush=True)
        if db.engine.dialect.name == "postgresql":
            db.session.execute(text("ANALYZE posts"))
            db.session.commit()
    print(f"  ({time.perf_counter() - started:.1f} s)")

    paths = {"first": "/posts?limit=20", "deep": "/posts?limit=20&before=100"}
    samples = {name: [] for name in paths}
    for i in range(args.requests + 50):  # interleaved, so both see the same machine state
        for name, path in paths.items():
            t0 = time.perf_counter()
            response = client.get(path)
            elapsed = (time.perf_counter() - t0) * 1000
            assert response.status_code == 200 and len(response.get_json()) == 20, response.data
            if i >= 50:  # the first 50 rounds warm caches up
                samples[name].append(elapsed)
    first, deep = (
        (statistics.median(s), statistics.quantiles(s, n=100)[98]) for s in samples.values()
    )
    print(f"first page:             p50 {first[0]:.2f} ms  p99 {first[1]:.2f} ms")
    print(f"page near post 100 of {args.posts:,}: p50 {deep[0]:.2f} ms  p99 {deep[1]:.2f} ms")
    print(f"deep/first p50 ratio:   {deep[0] / first[0]:.2f}")


if __name__ == "__main__":
    main()
