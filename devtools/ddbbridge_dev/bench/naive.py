"""Deploy the naive baseline: its handler as a zip, an IAM role, a function and a stream mapping
per side, over two user tables of its own."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from ddbbridge_dev.bench.settings import NAIVE_PARAMETERS

HANDLER_SOURCE = Path(__file__).with_name("naive_sender.py")
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def build_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("naive_sender.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, HANDLER_SOURCE.read_bytes())
    return buffer.getvalue()


def function_name(side: str) -> str:
    return f"bench-naive-{side}-sender"


def deploy_side(
    *,
    side: str,
    clients: dict[str, Any],
    table: str,
    stream_arn: str,
    peer: dict[str, str],
    origin_attribute: str,
    timestamp_attribute: str,
) -> str:
    """One side's naive sender (its table's stream -> the peer's table). Returns the mapping UUID.

    `clients`: lambda and iam clients of this side; `peer`: region, endpoint (through the WAN
    proxy), table and name of the peer side."""
    name = function_name(side)
    role = clients["iam"].create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"][
        "Arn"
    ]
    config = {
        "peer_region": peer["region"],
        "peer_endpoint_url": peer["endpoint"],
        "peer_table": peer["table"],
        "peer_region_name": peer["name"],
        "key_names": ["PK"],
        "origin_attribute": origin_attribute,
        "timestamp_attribute": timestamp_attribute,
    }
    lam = clients["lambda"]
    lam.create_function(
        FunctionName=name,
        Runtime=NAIVE_PARAMETERS["Runtime"],
        Role=role,
        Handler=NAIVE_PARAMETERS["Handler"],
        Code={"ZipFile": build_zip()},
        Timeout=NAIVE_PARAMETERS["Timeout"],
        MemorySize=NAIVE_PARAMETERS["MemorySize"],
        Environment={"Variables": {"NAIVE_CONFIG": json.dumps(config)}},
    )
    mapping = lam.create_event_source_mapping(
        EventSourceArn=stream_arn,
        FunctionName=name,
        BatchSize=NAIVE_PARAMETERS["BatchSize"],
        ParallelizationFactor=NAIVE_PARAMETERS["ParallelizationFactor"],
        MaximumBatchingWindowInSeconds=NAIVE_PARAMETERS["MaximumBatchingWindowInSeconds"],
        MaximumRetryAttempts=NAIVE_PARAMETERS["MaximumRetryAttempts"],
        BisectBatchOnFunctionError=NAIVE_PARAMETERS["BisectBatchOnFunctionError"],
        StartingPosition=NAIVE_PARAMETERS["StartingPosition"],
    )
    return str(mapping["UUID"])
