#!/usr/bin/env python3
"""Interoperability driver for the keyrings of the official Material Providers Library
(aws-cryptographic-material-providers 1.11.3) with the Python ESDK (aws-encryption-sdk 4.0.7).

  mpl_python.py kms-rsa ARN PEM ALGORITHM DIR
      AWS KMS RSA keyring for key ARN (public key in the PEM file, ALGORITHM RSAES_OAEP_SHA_1 or
      RSAES_OAEP_SHA_256). Decrypts every DIR/*.rust message (each with the encryption context
      of DIR/context.json) and checks it against DIR/plaintext; then writes DIR/<suite>.python,
      one message per unsigned suite id given in DIR/suites.json, for the other side to decrypt.

  mpl_python.py hierarchy-create TABLE KMS_ARN LOGICAL_NAME OUT
      Creates the key store TABLE (logical name LOGICAL_NAME, branch keys under KMS_ARN) with the
      official KeyStore and a branch key with the custom context {"tenant": "acme"}; writes to OUT
      a message (empty context) under that first version; makes a second version; prints what
      hierarchy-describe prints, then "branch-key-id=ID" last.

  mpl_python.py hierarchy-describe TABLE KMS_ARN LOGICAL_NAME BRANCH_KEY_ID
      Prints "active-version=V", "active-sha256=H" and "beacon-sha256=H" (SHA-256 of the
      unwrapped keys, never the keys) and "context=JSON" (the branch key's custom context).

  mpl_python.py hierarchy TABLE KMS_ARN LOGICAL_NAME BRANCH_KEY_ID DIR
      The Hierarchical keyring (TTL 600 s) on that store and branch key: as kms-rsa, for every
      suite id in DIR/suites.json.

KMS goes through the standard boto3 environment (AWS_ENDPOINT_URL, AWS_REGION, credentials).
Prints one line per failure and ends with "N passed, M failed"; exits 1 on any failure.
"""
import glob
import hashlib
import json
import os
import sys

import boto3
import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.keystore import KeyStore
from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
from aws_cryptographic_material_providers.keystore.models import (
    CreateKeyInput,
    CreateKeyStoreInput,
    GetActiveBranchKeyInput,
    GetBeaconKeyInput,
    KMSConfigurationKmsKeyArn,
    VersionKeyInput,
)
from aws_cryptographic_material_providers.mpl.models import (
    CreateAwsKmsHierarchicalKeyringInput,
    CreateAwsKmsRsaKeyringInput,
)


def exchange(keyring, directory, provider_id, key_info):
    """Decrypts every DIR/*.rust message (context DIR/context.json, plaintext DIR/plaintext),
    checking that the EDK is the expected one; then writes DIR/<suite>.python for each suite id
    in DIR/suites.json. Returns (passed, failed)."""
    with open(os.path.join(directory, "context.json")) as f:
        context = json.load(f)
    with open(os.path.join(directory, "plaintext"), "rb") as f:
        plaintext = f.read()
    passed, failed = 0, 0
    for path in sorted(glob.glob(os.path.join(directory, "*.rust"))):
        # Committing and non-committing suites alike: the Rust side wrote both.
        client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_ALLOW_DECRYPT)
        try:
            with open(path, "rb") as f:
                out, header = client.decrypt(source=f.read(), keyring=keyring, encryption_context=context)
            if out != plaintext:
                raise ValueError("plaintext differs")
            edk = header.encrypted_data_keys.pop()
            if edk.key_provider.provider_id != provider_id or edk.key_provider.key_info.decode() != key_info:
                raise ValueError(f"unexpected EDK {edk.key_provider}")
            passed += 1
        except Exception as e:  # report every failure, then the totals
            print(f"FAIL decrypt {os.path.basename(path)}: {type(e).__name__}: {e}")
            failed += 1
    with open(os.path.join(directory, "suites.json")) as f:
        suites = json.load(f)
    for suite_id in suites:
        suite = Algorithm.get_by_id(suite_id)
        policy = (
            CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
            if suite.is_committing()
            else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
        )
        client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
        try:
            message, _ = client.encrypt(
                source=plaintext, keyring=keyring, encryption_context=context, algorithm=suite
            )
            with open(os.path.join(directory, f"{suite_id:04x}.python"), "wb") as f:
                f.write(message)
            passed += 1
        except Exception as e:
            print(f"FAIL encrypt {suite_id:04x}: {type(e).__name__}: {e}")
            failed += 1
    return passed, failed


def report(passed, failed):
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def kms_rsa(arn, pem_path, algorithm, directory):
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    region = arn.split(":")[3]
    with open(pem_path, "rb") as f:
        pem = f.read()
    keyring = mpl.create_aws_kms_rsa_keyring(
        input=CreateAwsKmsRsaKeyringInput(
            kms_key_id=arn,
            encryption_algorithm=algorithm,
            public_key=pem,
            kms_client=boto3.client("kms", region_name=region),
        )
    )
    return report(*exchange(keyring, directory, "aws-kms-rsa", arn))


def key_store(table, arn, logical):
    region = arn.split(":")[3]
    return KeyStore(
        config=KeyStoreConfig(
            ddb_table_name=table,
            kms_configuration=KMSConfigurationKmsKeyArn(value=arn),
            logical_key_store_name=logical,
            kms_client=boto3.client("kms", region_name=region),
            ddb_client=boto3.client("dynamodb", region_name=region),
        )
    )


def describe(store, branch_key_id):
    """Prints the active version, and SHA-256 digests of the active branch key and the beacon
    key (digests, not keys), for the other side to compare with what it unwraps."""
    active = store.get_active_branch_key(
        GetActiveBranchKeyInput(branch_key_identifier=branch_key_id)
    ).branch_key_materials
    beacon = store.get_beacon_key(GetBeaconKeyInput(branch_key_identifier=branch_key_id)).beacon_key_materials
    print(f"active-version={active.branch_key_version}")
    print(f"active-sha256={hashlib.sha256(bytes(active.branch_key)).hexdigest()}")
    print(f"beacon-sha256={hashlib.sha256(bytes(beacon.beacon_key)).hexdigest()}")
    print(f"context={json.dumps(active.encryption_context, sort_keys=True)}")


def hierarchy_create(table, arn, logical, first_version_message):
    store = key_store(table, arn, logical)
    store.create_key_store(CreateKeyStoreInput())
    branch_key_id = store.create_key(CreateKeyInput(encryption_context={"tenant": "acme"})).branch_key_identifier
    # One message under the first version, for the other side to decrypt after the rotation.
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyring = mpl.create_aws_kms_hierarchical_keyring(
        input=CreateAwsKmsHierarchicalKeyringInput(key_store=store, branch_key_id=branch_key_id, ttl_seconds=600)
    )
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    message, _ = client.encrypt(source=b"written under the first version", keyring=keyring)
    with open(first_version_message, "wb") as f:
        f.write(message)
    store.version_key(VersionKeyInput(branch_key_identifier=branch_key_id))
    describe(store, branch_key_id)
    print(f"branch-key-id={branch_key_id}")
    return 0


def hierarchy_describe(table, arn, logical, branch_key_id):
    describe(key_store(table, arn, logical), branch_key_id)
    return 0


def hierarchy(table, arn, logical, branch_key_id, directory):
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    keyring = mpl.create_aws_kms_hierarchical_keyring(
        input=CreateAwsKmsHierarchicalKeyringInput(
            key_store=key_store(table, arn, logical), branch_key_id=branch_key_id, ttl_seconds=600
        )
    )
    return report(*exchange(keyring, directory, "aws-kms-hierarchy", branch_key_id))


def main():
    verbs = {
        "kms-rsa": (kms_rsa, 6),
        "hierarchy-create": (hierarchy_create, 6),
        "hierarchy-describe": (hierarchy_describe, 6),
        "hierarchy": (hierarchy, 7),
    }
    if len(sys.argv) < 2 or sys.argv[1] not in verbs or len(sys.argv) != verbs[sys.argv[1]][1]:
        sys.exit(__doc__)
    sys.exit(verbs[sys.argv[1]][0](*sys.argv[2:]))


if __name__ == "__main__":
    main()
