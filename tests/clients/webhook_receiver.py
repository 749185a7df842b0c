"""A webhook endpoint for the events tests, verifying every request with the Standard Webhooks
reference library (`standardwebhooks`).

Usage: webhook_receiver.py PORT SECRET FAIL_FIRST LOG

Answers 500 to the first FAIL_FIRST requests, then 200; appends one JSON line per request to LOG:
{"id": webhook-id, "valid": signature verified, "status": answer, "body": the body}.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT, SECRET, FAIL_FIRST, LOG = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
verifier = Webhook(SECRET)
lock = threading.Lock()
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        try:
            verifier.verify(body, dict(self.headers.items()))
            valid = True
        except WebhookVerificationError:
            valid = False
        with lock:
            seen += 1
            status = 500 if seen <= FAIL_FIRST else 200
            with open(LOG, "a") as log:
                log.write(json.dumps({
                    "id": self.headers.get("webhook-id"),
                    "valid": valid,
                    "status": status,
                    "body": body,
                }) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
