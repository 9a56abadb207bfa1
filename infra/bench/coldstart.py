"""Time from process start to "ready for the first event" of the Lambda binaries.

A stand-in for the Lambda runtime API listens on loopback; each binary is started with
AWS_LAMBDA_RUNTIME_API pointing at it, and the time until its first
`GET /2018-06-01/runtime/invocation/next` is measured (configuration read, AWS clients built,
start-up secrets read from moto server, runtime client ready). Needs moto server
(infra/moto.sh start) and the built bootstraps (infra/ship.sh build).

  python3 infra/bench/coldstart.py [RUNS] [TARGET_DIR]
"""
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
TARGET = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("CARGO_TARGET_DIR", "target")
MOTO = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
PREFIX = "coldstart"

first_next = threading.Event()


class Runtime(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            first_next.set()
            time.sleep(5)  # hold the long poll; the process is killed meanwhile
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args):
        pass


def secretsmanager(action, body):
    req = urllib.request.Request(
        MOTO,
        data=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"secretsmanager.{action}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261127/eu-south-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        urllib.request.urlopen(req).read()
    except urllib.error.HTTPError as e:
        if e.code != 400:  # already exists
            raise


def main():
    for name in ("zendesk-api-token", "admin-token"):
        secretsmanager("CreateSecret", {"Name": f"{PREFIX}/{name}", "SecretString": "x" * 40})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "coldstart",
        "AWS_LAMBDA_LOG_GROUP_NAME": "coldstart",
        "AWS_ENDPOINT_URL": MOTO,
        "AWS_REGION": "eu-south-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "TABLE_NAME": "coldstart",
        "SECRETS_PREFIX": PREFIX,
        "ZENDESK_URL": "http://127.0.0.1:9",
        "ZENDESK_EMAIL": "agent@example.test",
        "POLLER_ARN": "arn:aws:lambda:eu-south-1:123456789012:function:coldstart-poller",
        "RUST_LOG": "warn",
    })
    for binary in ("poller", "api"):
        path = os.path.join(TARGET, "lambda", binary, "bootstrap")
        times = []
        for _ in range(RUNS):
            first_next.clear()
            start = time.perf_counter()
            proc = subprocess.Popen([path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ok = first_next.wait(10)
            elapsed = (time.perf_counter() - start) * 1000
            proc.kill()
            err = proc.communicate()[1].decode(errors="replace")
            if not ok:
                sys.exit(f"{binary} never asked for an event:\n{err}")
            times.append(elapsed)
        times.sort()
        print(f"{binary}: start to first /next over {RUNS} runs: median {statistics.median(times):.1f} ms, "
              f"min {times[0]:.1f} ms, max {times[-1]:.1f} ms (size {os.path.getsize(path)} bytes)")
    server.shutdown()


if __name__ == "__main__":
    main()
