"""A function URL's caller on Python's standard library (urllib), as a script or service without
an SDK calls one. Usage: url_client.py FUNCTION_URL MISSING_URL ORIGIN. Prints one JSON object:
for each call (get, post, plain, missing, preflight) its status, headers (lower-case names),
Set-Cookie values and body."""
import json
import sys
import urllib.error
import urllib.request


def call(url, method="GET", headers=None, data=None):
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as error:
        response = error
    with response:
        body = response.read()
        return {
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.headers.items()},
            "cookies": response.headers.get_all("set-cookie") or [],
            "body": body.decode("utf-8", "replace"),
        }


def main():
    url, missing, origin = sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/"), sys.argv[3]
    print(
        json.dumps(
            {
                "get": call(f"{url}/hello/world?x=1&x=2&y=a%20b", headers={"Cookie": "a=1; b=2"}),
                "post": call(
                    f"{url}/upload",
                    method="POST",
                    headers={"Content-Type": "application/octet-stream"},
                    data=bytes([0, 1, 2, 255]),
                ),
                "plain": call(f"{url}/plain?name=urllib"),
                "missing": call(f"{missing}/x"),
                "preflight": call(
                    f"{url}/hello",
                    method="OPTIONS",
                    headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
