"""Fixtures that talk to a real moto server over HTTP."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto.server import ThreadedMotoServer

from refund_poller.local.dynamodb_atomicity import serialise_dynamodb_writes

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server of our own (not the local stack), for tests of single adapters."""
    for name, value in FAKE_ENV.items():
        os.environ.setdefault(name, value)
    serialise_dynamodb_writes()  # as on AWS, a conditional write to an item is atomic
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def dynamodb(moto_endpoint: str) -> DynamoDBClient:
    return boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
