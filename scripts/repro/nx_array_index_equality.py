"""An equality on an indexed array field matches nothing on nx-27017 0.8.1.

`find({"tags": "a"})` must match a document whose `tags` array holds "a" (MongoDB's
multikey indexes index each element). On nx-27017 0.8.1 it does without an index on
`tags`, and returns nothing once one exists; `{"tags": {"$in": ["a"]}}` and
`{"tags": {"$elemMatch": {"$eq": "a"}}}` still match. The product looks up a person's
households by `memberIds` (indexed) with `$in`, which is the same query on MongoDB.

Run (exit status 1 while the bug is there, 0 once equality matches with the index):
    scripts/localdb.sh start --server nx --throwaway    # prints the URI
    .venv/bin/python scripts/repro/nx_array_index_equality.py URI
"""

import sys

from pymongo import MongoClient


def main(uri: str) -> int:
    client = MongoClient(uri)
    db = client["repro_array_index_equality"]
    db.drop_collection("docs")
    docs = db["docs"]
    docs.insert_one({"_id": 1, "tags": ["a", "b"]})
    # `find`, as an application reads (a count runs through another path).
    before = len(list(docs.find({"tags": "a"})))
    docs.create_index([("tags", 1)])
    after = len(list(docs.find({"tags": "a"})))
    with_in = len(list(docs.find({"tags": {"$in": ["a"]}})))
    client.drop_database(db.name)
    print(f"equality without index: {before}, with index: {after}, $in with index: {with_in}")
    if after != 1:
        print("bug: an equality on an indexed array field matched nothing")
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
