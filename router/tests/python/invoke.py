"""Invoke through the router with boto3, the unmodified AWS SDK, and print what came back as JSON.

usage: invoke.py ENDPOINT_URL COUNT PAYLOAD_JSON [FUNCTION_NAME [THREADS]]
Sends COUNT invocations, THREADS at once (default: all of them), and prints
{"elapsed": s, "results": [...]}.
"""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore
from botocore.config import Config

url, count, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3]
name = sys.argv[4] if len(sys.argv) > 4 else "hello"
threads = int(sys.argv[5]) if len(sys.argv) > 5 else count
client = boto3.client(
    "lambda",
    endpoint_url=url,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    # One attempt: the SDK would otherwise retry throttles itself and hide them.
    config=Config(retries={"total_max_attempts": 1}, read_timeout=60, max_pool_connections=64),
)


def call(_):
    try:
        r = client.invoke(FunctionName=name, Payload=payload)
        body = r["Payload"].read()
        return {
            "status": r["StatusCode"],
            "functionError": r.get("FunctionError"),
            "executedVersion": r.get("ExecutedVersion"),
            "payload": json.loads(body) if body else None,
        }
    except botocore.exceptions.ClientError as e:
        return {
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "code": e.response["Error"]["Code"],
            "message": e.response["Error"].get("Message"),
            "reason": e.response.get("Reason"),
            "retryAfter": e.response["ResponseMetadata"]["HTTPHeaders"].get("retry-after"),
        }


# Open the pool's connections outside the timed part, as a warm client would have them.
start = time.monotonic()
with ThreadPoolExecutor(max_workers=threads) as pool:
    results = list(pool.map(call, range(count)))
print(json.dumps({"elapsed": time.monotonic() - start, "results": results}))
