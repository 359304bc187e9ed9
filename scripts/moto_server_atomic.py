"""moto_server, with every request handled under one lock.

moto's threaded server evaluates a DynamoDB ConditionExpression and then writes
without a lock, so two concurrent conditional updates of one item can both
succeed; real DynamoDB evaluates and writes atomically, and Ferry's leases and
fencing rely on that (the store conformance test caught two workers holding one
chunk on moto, about 1 run in 10). Connections are still accepted on threads
(the SDKs keep connections alive); only the application call is serialised.
Same arguments as moto_server: -H host -p port.
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def atomic(environ, start_response):
        with lock:
            # The body is materialised under the lock: a lazy iterator would run
            # moto's code after the lock is released.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, atomic, threaded=True)


if __name__ == "__main__":
    main()
