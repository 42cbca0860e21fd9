"""A tiny WSGI app for the `grace run` tests: `/` answers with the pid of the
worker, `/slow?ms=N` answers after N milliseconds (a request in flight while
grace stops or replaces the app)."""
import os
import sys
import time


def app(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        # Tells a test the request is in a worker's hands.
        print(f"slow request started in {os.getpid()}", file=sys.stderr, flush=True)
        query = dict(p.split("=", 1) for p in environ.get("QUERY_STRING", "").split("&") if "=" in p)
        time.sleep(int(query.get("ms", "1000")) / 1000)
    body = f"hello from {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
