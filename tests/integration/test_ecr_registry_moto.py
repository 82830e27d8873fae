"""EcrRegistry: tag lookups and re-tags through the ECR API (moto server), not the registry protocol."""

from __future__ import annotations

import json

import pytest

from pipeline_tools.images.registry import EcrRegistry, RegistryError

HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7,
                                  "digest": "sha256:" + "a" * 64},
                       "layers": []})


@pytest.fixture
def ecr(aws):
    client = aws.client("ecr")
    client.create_repository(repositoryName="iris-model")
    return client


def test_manifest_digest_of_present_absent_tag_and_missing_repository(ecr):
    pushed = ecr.put_image(repositoryName="iris-model", imageManifest=MANIFEST, imageTag="c0ffee")
    digest = pushed["image"]["imageId"]["imageDigest"]
    reg = EcrRegistry(HOST, ecr)
    assert reg.manifest_digest("iris-model", "c0ffee") == digest
    assert reg.manifest_digest("iris-model", digest) == digest
    assert reg.manifest_digest("iris-model", "nope") is None
    assert reg.manifest_digest("other-repo", "c0ffee") is None


def test_retag_adds_a_tag_without_layers_and_is_idempotent(ecr):
    digest = ecr.put_image(repositoryName="iris-model", imageManifest=MANIFEST,
                           imageTag="c0ffee")["image"]["imageId"]["imageDigest"]
    reg = EcrRegistry(HOST, ecr)
    assert reg.retag("iris-model", digest, "git-1234") == digest
    assert reg.manifest_digest("iris-model", "git-1234") == digest
    assert reg.retag("iris-model", "c0ffee", "git-1234") == digest   # the same tag again: no error


def test_retag_of_unknown_source_is_not_found(ecr):
    from pipeline_tools.core.errors import NotFoundError

    with pytest.raises((NotFoundError, RegistryError)):
        EcrRegistry(HOST, ecr).retag("iris-model", "missing", "x")


def test_immutable_tag_pointing_elsewhere_is_refused():
    """moto gives every manifest the same digest, so this case is a Stubber shaped like the API reference."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    one, two = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    with Stubber(client) as stub:
        stub.add_response("batch_get_image", {"images": [{"registryId": "123456789012", "repositoryName": "iris-model",
                                                          "imageId": {"imageDigest": two, "imageTag": "two"},
                                                          "imageManifest": MANIFEST}], "failures": []})
        stub.add_client_error("put_image", "ImageTagAlreadyExistsException", "tag one exists")
        stub.add_response("describe_images", {"imageDetails": [{"imageDigest": one, "imageTags": ["one"]}]})
        with pytest.raises(RegistryError, match="immutable"):
            EcrRegistry(HOST, client).retag("iris-model", "two", "one")
        stub.assert_no_pending_responses()
