"""A range over a descending index loses documents on SecantusDB 0.7.0b3.

The expenses service once listed a user's expenses through indexes ending in a descending
`sortKey` ({userId: 1, deleted: 1, sortKey: -1}). On SecantusDB 0.7.0b3 a `$gte`/`$gt`
range on `sortKey` served by such an index drops the documents whose key starts with the
lower bound, so "expenses from 1 June" missed those of 1 June. The same query served by
an ascending index, or by a collection scan, finds them all; MongoDB finds them all with
either index. The product now builds ascending indexes (a MongoDB index serves both sort
directions), so it does not meet this bug; this script shows it on the server itself.

Run (exit status 1 while the bug is there, 0 once it is fixed):
    scripts/localdb.sh start --throwaway        # prints the URI
    .venv-secantus/bin/python scripts/repro/secantus_desc_index_range.py URI
"""

import itertools
import sys

from pymongo import MongoClient

DAYS = ["20240531", "20240601", "20240605", "20240610", "20240611", "20240612"]
BOUNDS = [("$gte", "$lt"), ("$gt", "$lte"), ("$gte", "$lte"), ("$gt", "$lt")]


def mismatches(coll, direction):
    """Queries whose answer through the index differs from a collection scan's."""
    coll.drop()
    coll.create_index([("userId", 1), ("deleted", 1), ("sortKey", direction)])
    coll.insert_many(
        {"userId": "u", "deleted": False, "sortKey": f"{day}|{n}"}
        for n, day in enumerate(DAYS)
    )
    wrong = []
    for low, high in itertools.product(DAYS, DAYS):
        for low_op, high_op in BOUNDS:
            query = {
                "userId": "u",
                "deleted": False,
                "sortKey": {low_op: low, high_op: high + "~"},
            }
            for order in (1, -1):
                through_index = [d["sortKey"] for d in coll.find(query).sort("sortKey", order)]
                scanned = [
                    d["sortKey"]
                    for d in coll.find(query).hint([("_id", 1)]).sort("sortKey", order)
                ]
                if through_index != scanned:
                    wrong.append((query["sortKey"], order, through_index, scanned))
    return wrong


def main():
    uri = sys.argv[1] if len(sys.argv) > 1 else "mongodb://127.0.0.1:27017/?retryWrites=false"
    client = MongoClient(uri, serverSelectionTimeoutMS=5000)
    info = client.admin.command("buildInfo")
    print(f"server {info.get('version')} (SecantusDB {info.get('secantusVersion', '-')})")
    coll = client["repro_desc_index_range"]["expenses"]
    failed = False
    for direction, name in ((1, "ascending"), (-1, "descending")):
        wrong = mismatches(coll, direction)
        print(f"{name} index: {len(wrong)} of {len(DAYS) ** 2 * len(BOUNDS) * 2} ranges differ from a collection scan")
        for bounds, order, got, want in wrong[:3]:
            print(f"  {bounds} sort {order}: index {got}, scan {want}")
        failed = failed or bool(wrong)
    client.drop_database("repro_desc_index_range")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
