"""An unmodified Lambda function for Python, packed as localhost/lmi/hello-python:dev.

The payload steers it so that tests can: {"name": "x"} is greeted, {"sleepMs": N} waits N ms
first, {"fail": "message"} raises (an error result with that message).
"""
import os
import time


def handler(event, context):
    if not isinstance(event, dict):
        event = {}
    if "sleepMs" in event:
        time.sleep(float(event["sleepMs"]) / 1000)
    if "fail" in event:
        raise RuntimeError(str(event["fail"]))
    return {
        "message": f"Hello, {event.get('name', 'world')}!",
        "requestId": context.aws_request_id,
        # Which EE served it: the pod's name.
        "pod": os.environ.get("HOSTNAME"),
    }
