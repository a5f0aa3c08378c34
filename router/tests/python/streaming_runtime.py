"""A custom runtime (as Lambda's provided runtimes run one) that streams its answers through the
Runtime API: `Lambda-Runtime-Function-Response-Mode: streaming`, chunked, and an error after the
first bytes in the trailers `Lambda-Runtime-Function-Error-Type` / `-Body` (base64 JSON), as
Lambda's documentation for custom runtimes defines. Written on plain sockets: Python's HTTP
client cannot send trailers.

The event steers it: {"chunks": ["a", "b"], "gapMs": N, "failWith": "message"} writes each chunk,
waits N ms between them, and then reports the error, if one is given.
"""
import base64
import http.client
import json
import os
import socket
import time

host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")


def next_event():
    conn = http.client.HTTPConnection(host, int(port))
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    body = resp.read()
    request_id = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.close()
    return request_id, json.loads(body or b"{}")


def stream_answer(request_id, event):
    s = socket.create_connection((host, int(port)))
    s.sendall(
        (
            f"POST /2018-06-01/runtime/invocation/{request_id}/response HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n"
            "\r\n"
        ).encode()
    )
    for i, chunk in enumerate(event.get("chunks", [])):
        if i > 0:
            time.sleep(event.get("gapMs", 0) / 1000)
        data = chunk.encode()
        s.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    trailers = ""
    if "failWith" in event:
        doc = json.dumps({"errorType": "Runtime.StreamError", "errorMessage": event["failWith"]})
        trailers = (
            "Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\n"
            f"Lambda-Runtime-Function-Error-Body: {base64.b64encode(doc.encode()).decode()}\r\n"
        )
    s.sendall(f"0\r\n{trailers}\r\n".encode())
    s.recv(4096)
    s.close()


while True:
    rid, ev = next_event()
    stream_answer(rid, ev)
