"""A Python Lambda function for the integration tests, run by the real awslambdaric client."""
import os
import time


def handler(event, context):
    if "sleepMs" in event:
        time.sleep(event["sleepMs"] / 1000)
    if "fail" in event:
        raise ValueError(event["fail"])
    return {
        "echo": event,
        "ee": os.environ.get("EE_NAME"),
        "requestId": context.aws_request_id,
        "invokedFunctionArn": context.invoked_function_arn,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
