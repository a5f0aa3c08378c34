"""A Python Lambda function behind a function URL (run by awslambdaric): it answers what it was
given, in Lambda's response shape. `/binary` answers 4 bytes base64-encoded; `/plain` answers a
plain JSON value (no statusCode)."""
import base64
import json


def handler(event, context):
    path = event.get("rawPath")
    if path == "/binary":
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/octet-stream"},
            "body": base64.b64encode(b"\x00\x9f\x92\x96").decode(),
            "isBase64Encoded": True,
        }
    if path == "/plain":
        return {"just": "json"}
    body = event.get("body")
    if body is not None and event.get("isBase64Encoded"):
        body = base64.b64decode(body).hex()
    return {
        "statusCode": 201,
        "headers": {"content-type": "application/json", "x-seen-by": "url_handler"},
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
