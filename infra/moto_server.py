"""moto's server, answering one request at a time.

moto's own `moto_server` serves each request on a thread of its own, and its DynamoDB backend
checks a ConditionExpression and applies the update in two Python steps with no lock between
them: under load, two concurrent conditional writes can both pass (measured: 2 of 8 runs of the
20-taker lease test saw two winners with the CPU busy). Real DynamoDB applies a conditional write
atomically, and the connector's leases rely on it. This wrapper keeps the threaded server (so
slow clients never block each other's connections) but runs moto's application under one lock,
which makes every request atomic, as every write to one DynamoDB item is.

    python3 infra/moto_server.py HOST PORT
"""

import os
import sys
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    # moto builds some URLs from it, as its own launcher does.
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            body = app(environ, start_response)
            try:
                chunks = list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        return chunks

    run_simple(host, port, one_at_a_time, threaded=True)


if __name__ == "__main__":
    main()
