"""Does the time of an answer tell whether a name has an account? Two measurements, in-process:

    make bench-enumeration                # SQLite in a temporary directory
    make bench-enumeration DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test

1. A 429 for a locked-out name: a real account's against a name nobody has, in interleaved
   pairs (the order alternating), enough of them to see a 0.1 ms difference.
2. A failed login after BCRYPT_LOG_ROUNDS was raised: an account that has not logged in since
   (an older, cheaper hash), one that has (a hash at today's cost), and a name nobody has.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pagination import scratch_app  # noqa: E402

from services import PASSWORD  # noqa: E402


def timed(client, body, address):
    started = time.perf_counter()
    response = client.post("/login", json=body, environ_base={"REMOTE_ADDR": address})
    elapsed = time.perf_counter() - started
    response.close()
    return response.status_code, elapsed


def lockout_pairs(app, pairs):
    """Median of (real - nobody) for locked-out 429s, and how often the real one was slower."""
    client = app.test_client()
    for name, address in (("alice", "10.0.0.1"), ("nobody", "10.0.0.2")):
        for _ in range(5):
            timed(client, {"username": name, "password": "wrong"}, address)
    differences = []
    for i in range(pairs):
        order = [("alice", "10.0.0.1"), ("nobody", "10.0.0.2")]
        if i % 2:
            order.reverse()
        times = {}
        for name, address in order:
            status, elapsed = timed(client, {"username": name, "password": "wrong"}, address)
            assert status == 429, status
            times[name] = elapsed
        differences.append(times["alice"] - times["nobody"])
    slower = sum(d > 0 for d in differences) / len(differences)
    return statistics.median(differences) * 1000, slower


def dormant_logins(app, db, rounds, repeats):
    """Median failed-login time for each kind of name, BCRYPT_LOG_ROUNDS raised by one."""
    from models import User

    with app.app_context():
        app.config["BCRYPT_LOG_ROUNDS"] = rounds - 1
        db.session.add(User(username="dormant", password_hash=PASSWORD))
        app.config["BCRYPT_LOG_ROUNDS"] = rounds
        db.session.add(User(username="active", password_hash=PASSWORD))
        db.session.commit()
    client = app.test_client()
    times = {"dormant": [], "active": [], "nobody": []}
    for i in range(repeats):
        for name in times:
            address = f"10.1.{i}.{len(name)}"  # never locked out
            status, elapsed = timed(client, {"username": name, "password": "wrong"}, address)
            assert status == 401, status
            times[name].append(elapsed)
    return {name: statistics.median(values) * 1000 for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=12, help="BCRYPT_LOG_ROUNDS raised to")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with scratch_app(CORS_ORIGINS="", BCRYPT_LOG_ROUNDS="4", REDIS_URL="") as app:
        from config import db

        app.test_client().post("/signup", json={"username": "alice", "password": PASSWORD})
        median, slower = lockout_pairs(app, args.pairs)
        print(
            f"429 for a locked-out name, {args.pairs} pairs: real account - nobody = "
            f"{median:+.4f} ms at the median; the real one slower in {slower:.0%} of pairs"
        )
        medians = dormant_logins(app, db, args.rounds, args.repeats)
        print(
            f"failed login, BCRYPT_LOG_ROUNDS {args.rounds - 1} -> {args.rounds}, median of "
            f"{args.repeats}: " + ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items())
        )
        with app.app_context():
            db.engine.dispose()


if __name__ == "__main__":
    main()
