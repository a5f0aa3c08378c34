"""Invokes a function through the router with boto3, as an AWS caller does, and prints one JSON
line: {"status", "payload"} on success, {"status", "code", "message"} on an error.

usage: invoke_boto3.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY FUNCTION MINUTES_AGO

MINUTES_AGO > 0 signs as if the clock were that far behind (botocore takes the signing time from
botocore.auth.get_current_datetime), to see the router refuse an old signature.
"""
import datetime
import json
import sys

import boto3
import botocore.auth
import botocore.config
import botocore.exceptions

endpoint, key, secret, function, minutes = sys.argv[1:6]
now = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda *a, **k: now(*a, **k) - datetime.timedelta(
    minutes=int(minutes)
)
client = boto3.client(
    "lambda",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id=key,
    aws_secret_access_key=secret,
    # One attempt: a refusal is the answer under test, not something to retry.
    config=botocore.config.Config(retries={"total_max_attempts": 1}),
)
try:
    r = client.invoke(FunctionName=function, Payload=json.dumps({"name": "boto3"}))
    print(json.dumps({"status": r["StatusCode"], "payload": json.loads(r["Payload"].read())}))
except botocore.exceptions.ClientError as e:
    print(
        json.dumps(
            {
                "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
                "code": e.response["Error"]["Code"],
                "message": e.response["Error"]["Message"],
            }
        )
    )
