#!/usr/bin/env python3
"""Interoperability driver for the keyrings of the official Material Providers Library
(aws-cryptographic-material-providers 1.11.3) with the Python ESDK (aws-encryption-sdk 4.0.7).

  mpl_python.py kms-rsa ARN PEM ALGORITHM DIR
      AWS KMS RSA keyring for key ARN (public key in the PEM file, ALGORITHM RSAES_OAEP_SHA_1 or
      RSAES_OAEP_SHA_256). Decrypts every DIR/*.rust message (each with the encryption context
      of DIR/context.json) and checks it against DIR/plaintext; then writes DIR/<suite>.python,
      one message per unsigned suite id given in DIR/suites.json, for the other side to decrypt.

KMS goes through the standard boto3 environment (AWS_ENDPOINT_URL, AWS_REGION, credentials).
Prints one line per failure and ends with "N passed, M failed"; exits 1 on any failure.
"""
import glob
import json
import os
import sys

import boto3
import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsRsaKeyringInput


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
            if edk.key_provider.provider_id != "aws-kms-rsa" or edk.key_provider.key_info.decode() != arn:
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
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    verbs = {"kms-rsa": (kms_rsa, 6)}
    if len(sys.argv) < 2 or sys.argv[1] not in verbs or len(sys.argv) != verbs[sys.argv[1]][1]:
        sys.exit(__doc__)
    sys.exit(verbs[sys.argv[1]][0](*sys.argv[2:]))


if __name__ == "__main__":
    main()
