"""An unmodified Lambda function for Python, packed as localhost/lmi/hello-python:dev.

Invoked, the payload steers it so that tests can: {"name": "x"} is greeted, {"sleepMs": N} waits
N ms first, {"fail": "message"} raises (an error result with that message).

Behind a function URL (an event of payload format 2.0), it answers in Lambda's response shape
what it was given: method, path, query, cookies and body (binary bodies as hex), with status 201,
a header and two cookies. `/plain` answers the greeting as a plain value (Lambda makes it a 200
JSON body), greeting `?name=`; `/binary` answers 4 bytes base64-encoded.
"""
import base64
import json
import os
import time


def handler(event, context):
    if not isinstance(event, dict):
        event = {}
    if "http" in (event.get("requestContext") or {}):
        return web(event, context)
    if "sleepMs" in event:
        time.sleep(float(event["sleepMs"]) / 1000)
    if "fail" in event:
        raise RuntimeError(str(event["fail"]))
    return greeting(event.get("name", "world"), context)


def greeting(name, context):
    return {
        "message": f"Hello, {name}!",
        "requestId": context.aws_request_id,
        # Which EE served it: the pod's name.
        "pod": os.environ.get("HOSTNAME"),
    }


def web(event, context):
    path = event.get("rawPath")
    query = event.get("queryStringParameters") or {}
    if path == "/plain":
        return greeting(query.get("name", "world"), context)
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(b"\x00\x9f\x92\x96").decode(),
            "isBase64Encoded": True,
        }
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body).hex()
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-seen-by": "hello-python"},
        "cookies": ["visited=yes; Path=/", "theme=dark"],
        "body": json.dumps(
            {
                "method": event["requestContext"]["http"]["method"],
                "rawPath": path,
                "rawQueryString": event.get("rawQueryString"),
                "query": event.get("queryStringParameters"),
                "cookies": event.get("cookies"),
                "body": body,
                "isBase64Encoded": event.get("isBase64Encoded"),
                "version": event.get("version"),
            }
        ),
    }
