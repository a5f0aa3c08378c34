"""Sends an asynchronous (Event) invocation through the router with boto3 and prints one JSON
line: {"status", "requestId"} when accepted, {"status", "code", "message"} on an error.

usage: invoke_event_boto3.py ENDPOINT ACCESS_KEY_ID SECRET_ACCESS_KEY FUNCTION PAYLOAD_JSON
"""
import json
import sys

import boto3
import botocore.config
import botocore.exceptions

endpoint, key, secret, function, payload = sys.argv[1:6]
client = boto3.client(
    "lambda",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id=key,
    aws_secret_access_key=secret,
    config=botocore.config.Config(retries={"total_max_attempts": 1}),
)
try:
    r = client.invoke(FunctionName=function, InvocationType="Event", Payload=payload)
    print(json.dumps({"status": r["StatusCode"], "requestId": r["ResponseMetadata"]["RequestId"]}))
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
