"""InvokeWithResponseStream through the router with boto3, the unmodified AWS SDK; prints what
came back as JSON, with the time each event arrived (seconds since the call was sent).

usage: invoke_stream.py ENDPOINT_URL PAYLOAD_JSON [FUNCTION_NAME]
Prints {"executedVersion", "contentType", "chunks": [{"at", "bytes", "text"}], "complete": {...},
"completeAt", "totalBytes", "xBytes"} ("text" only for short chunks; "xBytes": how many of the
bytes were "x").
"""
import json
import sys
import time

import boto3
from botocore.config import Config

url, payload = sys.argv[1], sys.argv[2]
name = sys.argv[3] if len(sys.argv) > 3 else "hello"
client = boto3.client(
    "lambda",
    endpoint_url=url,
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
)
started = time.monotonic()
r = client.invoke_with_response_stream(FunctionName=name, Payload=payload)
out = {
    "status": r["StatusCode"],
    "executedVersion": r.get("ExecutedVersion"),
    "contentType": r.get("ResponseStreamContentType"),
    "chunks": [],
    "totalBytes": 0,
    "xBytes": 0,
}
for event in r["EventStream"]:
    at = time.monotonic() - started
    if "PayloadChunk" in event:
        data = event["PayloadChunk"]["Payload"]
        out["totalBytes"] += len(data)
        out["xBytes"] += data.count(b"x")
        if len(data) <= 256:
            out["chunks"].append({"at": at, "bytes": len(data), "text": data.decode("utf-8", "replace")})
        else:
            out["chunks"].append({"at": at, "bytes": len(data)})
    if "InvokeComplete" in event:
        out["complete"] = event["InvokeComplete"]
        out["completeAt"] = at
print(json.dumps(out))
