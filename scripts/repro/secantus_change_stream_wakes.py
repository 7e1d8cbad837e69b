"""A change stream's awaitData getMore on SecantusDB 0.7.0b3 returns on every write to the
server, whatever its database or collection.

A change-stream cursor's `getMore` waits (up to `maxAwaitTimeMS`) for a change the stream
passes. On SecantusDB 0.7.0b3 the wait ends as soon as anything is written anywhere on the
server; the getMore then answers an empty batch and the driver sends the next one at once.
So every open change stream costs the server one more command for every write made by
anyone: with the product's four streams (one per service that follows changes), each
write of the alert path brings four more commands, all executed one at a time under the
server's global interpreter lock. MongoDB answers an empty getMore only when its await
time is up.

The script opens a stream on one database, writes 200 documents into another and counts
the getMore commands the stream's client sent meanwhile.

Run (exit status 1 while the behaviour is there, 0 once a stream waits out its await
time; the count is printed):
    scripts/localdb.sh start --throwaway        # prints the URI
    .venv-secantus/bin/python scripts/repro/secantus_change_stream_wakes.py URI
"""

import sys
import threading
import time

from pymongo import MongoClient, monitoring


class GetMores(monitoring.CommandListener):
    def __init__(self):
        self.count = 0

    def started(self, event):
        if event.command_name == "getMore":
            self.count += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def main(uri):
    getmores = GetMores()
    watcher = MongoClient(uri, event_listeners=[getmores])
    writer = MongoClient(uri)
    writes = 200
    stop = threading.Event()

    def follow():
        with watcher["repro_watched"]["items"].watch(max_await_time_ms=1000) as stream:
            while not stop.is_set():
                stream.try_next()

    t = threading.Thread(target=follow, daemon=True)
    t.start()
    time.sleep(1.5)
    before = getmores.count
    started = time.monotonic()
    for i in range(writes):
        writer["repro_elsewhere"]["other"].insert_one({"i": i})
        time.sleep(0.005)
    elapsed = time.monotonic() - started
    sent = getmores.count - before
    stop.set()
    # A stream that waits out its await time sends about one getMore per second.
    expected = int(elapsed) + 2
    print(
        f"{writes} writes to another database in {elapsed:.1f} s: the idle stream sent "
        f"{sent} getMore commands (a stream waiting out maxAwaitTimeMS=1000: about {expected})"
    )
    writer["repro_elsewhere"].command("dropDatabase")
    return 1 if sent > 4 * expected else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
