"""CloudWatch Logs subscription → OpenSearch _bulk (SigV4). Inlined into the Lambda by LogShipping."""
import base64
import gzip
import json
import os
import urllib.request
from datetime import UTC, datetime


def bulk_body(data, index):
    if data.get("messageType") != "DATA_MESSAGE":
        return ""
    lines = []
    for e in data.get("logEvents", []):
        at = datetime.fromtimestamp(e["timestamp"] / 1000, UTC)
        lines.append(json.dumps({"index": {"_index": f"{index}-{at:%Y.%m.%d}", "_id": e["id"]}}))
        lines.append(json.dumps({"@timestamp": at.isoformat(), "message": e["message"], "log_group": data["logGroup"],
                                 "log_stream": data["logStream"], "owner": data.get("owner")}))
    return "\n".join(lines) + "\n" if lines else ""


def handler(event, _context):
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    body = bulk_body(data, os.environ.get("INDEX", "logs"))
    if not body:
        return {"indexed": 0}
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.session import Session

    url = os.environ["ENDPOINT"].rstrip("/") + "/_bulk"
    req = AWSRequest("POST", url, data=body.encode(), headers={"Content-Type": "application/x-ndjson"})
    SigV4Auth(Session().get_credentials(), "es", os.environ["AWS_REGION"]).add_auth(req)
    http = urllib.request.Request(url, data=body.encode(), headers=dict(req.headers), method="POST")
    with urllib.request.urlopen(http, timeout=20) as resp:
        result = json.loads(resp.read())
    failed = [i for i in result.get("items", []) if i.get("index", {}).get("status", 200) >= 300]
    if failed:  # raise: the asynchronous invocation is retried
        raise RuntimeError(f"{len(failed)} of {len(result['items'])} events not indexed: {failed[0]}")
    return {"indexed": len(result.get("items", []))}
