#!/usr/bin/env python3
"""Interoperability driver for the official Python ESDK (aws-encryption-sdk 4.0.7).

  esdk_python.py decrypt DIR                 decrypt every test of the awses-decrypt manifest in DIR
  esdk_python.py encrypt DIR                 write raw-key messages + an awses-decrypt manifest into DIR
  esdk_python.py encrypt-kms DIR ARN DEC_ARN encrypt under KMS key ARN; the manifest decrypts with DEC_ARN
                                             (MRK-aware, e.g. the replica in another Region)
  esdk_python.py kinesis-deaggregate FILE ARN REGION
                                             decrypt each Kinesis record of FILE (JSON lines:
                                             partitionKey, sequenceNumber, data as base64) with
                                             only the MRK-aware key ARN (in REGION), split the
                                             plaintext with the KPL deaggregator (aws-kinesis-agg)
                                             and print one JSON line per user record

KMS keys go through the standard boto3 environment (AWS_ENDPOINT_URL, AWS_REGION, credentials).

Both directions use the manifest format of the official test vectors, with raw AES and raw RSA
keys (the legacy RawMasterKey provider, which writes the same EDK layout as the raw keyrings).
Prints one line per failure and ends with "N passed, M failed"; exits 1 on any failure.
"""
import base64
import json
import os
import sys

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm, EncryptionKeyType, WrappingAlgorithm
from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
from aws_encryption_sdk.key_providers.kms import (
    MRKAwareStrictAwsKmsMasterKeyProvider,
    StrictAwsKmsMasterKeyProvider,
)
from aws_encryption_sdk.key_providers.raw import RawMasterKey

AES = {
    16: WrappingAlgorithm.AES_128_GCM_IV12_TAG16_NO_PADDING,
    24: WrappingAlgorithm.AES_192_GCM_IV12_TAG16_NO_PADDING,
    32: WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
}
RSA = {
    ("pkcs1", None): WrappingAlgorithm.RSA_PKCS1,
    ("oaep-mgf1", "sha1"): WrappingAlgorithm.RSA_OAEP_SHA1_MGF1,
    ("oaep-mgf1", "sha256"): WrappingAlgorithm.RSA_OAEP_SHA256_MGF1,
    ("oaep-mgf1", "sha384"): WrappingAlgorithm.RSA_OAEP_SHA384_MGF1,
    ("oaep-mgf1", "sha512"): WrappingAlgorithm.RSA_OAEP_SHA512_MGF1,
}
POLICIES = {p.name: p for p in CommitmentPolicy}


def load(path):
    with open(path, "rb") as f:
        return f.read()


def resolve(base, uri):
    assert uri.startswith("file://"), uri
    return os.path.join(base, uri[len("file://"):])


def master_key(keys, mk):
    key = keys[mk["key"]]
    if mk["type"] == "aws-kms":
        return StrictAwsKmsMasterKeyProvider(key_ids=[key["key-id"]])
    if mk["type"] == "aws-kms-mrk-aware":
        return MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[key["key-id"]])
    if mk["encryption-algorithm"] == "aes":
        material = base64.b64decode(key["material"])
        wrapping = WrappingKey(wrapping_algorithm=AES[len(material)], wrapping_key=material,
                               wrapping_key_type=EncryptionKeyType.SYMMETRIC)
    else:
        padding = mk["padding-algorithm"]
        alg = RSA[(padding, None if padding == "pkcs1" else mk["padding-hash"])]
        pem = key["material"]
        kind = EncryptionKeyType.PRIVATE if "PRIVATE KEY" in pem else EncryptionKeyType.PUBLIC
        wrapping = WrappingKey(wrapping_algorithm=alg, wrapping_key=pem.encode(), wrapping_key_type=kind)
    return RawMasterKey(provider_id=mk["provider-id"], key_id=key["key-id"].encode(), wrapping_key=wrapping)


def provider(keys, master_keys):
    first = master_key(keys, master_keys[0])
    for mk in master_keys[1:]:
        first.add_master_key_provider(master_key(keys, mk))
    return first


def decrypt(base):
    manifest = json.loads(load(os.path.join(base, "manifest.json")))
    keys = json.loads(load(resolve(base, manifest["keys"])))["keys"]
    passed = failed = 0
    for name, test in sorted(manifest["tests"].items()):
        try:
            client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=POLICIES[test["commitment-policy"]])
            ciphertext = load(resolve(base, test["ciphertext"]))
            plaintext, header = client.decrypt(source=ciphertext, key_provider=provider(keys, test["master-keys"]))
            want = load(resolve(base, test["result"]["output"]["plaintext"]))
            if plaintext != want:
                raise AssertionError("plaintext differs (%d bytes, expected %d)" % (len(plaintext), len(want)))
            for k, v in test.get("encryption-context", {}).items():
                if header.encryption_context.get(k) != v:
                    raise AssertionError("encryption context key %r differs" % k)
            passed += 1
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(e).__name__, e))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def encrypt(base):
    os.makedirs(os.path.join(base, "ciphertexts"), exist_ok=True)
    os.makedirs(os.path.join(base, "plaintexts"), exist_ok=True)
    rsa_private = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "rsa-2048-private.pem")).decode()
    rsa_public = load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "rsa-2048-public.pem")).decode()
    keys = {
        "aes-128": {"type": "symmetric", "algorithm": "aes", "bits": 128, "encoding": "base64", "key-id": "aes-128",
                    "material": base64.b64encode(bytes(range(16))).decode()},
        "aes-256": {"type": "symmetric", "algorithm": "aes", "bits": 256, "encoding": "base64", "key-id": "aes-256",
                    "material": base64.b64encode(bytes(range(32))).decode()},
        "rsa-private": {"type": "private", "algorithm": "rsa", "bits": 2048, "encoding": "pem", "key-id": "rsa-2048",
                        "material": rsa_private},
        "rsa-public": {"type": "public", "algorithm": "rsa", "bits": 2048, "encoding": "pem", "key-id": "rsa-2048",
                       "material": rsa_public},
    }
    aes256 = {"type": "raw", "encryption-algorithm": "aes", "provider-id": "py-ns", "key": "aes-256"}
    aes128 = {"type": "raw", "encryption-algorithm": "aes", "provider-id": "py-ns", "key": "aes-128"}
    rsa = lambda p, h, k: {"type": "raw", "encryption-algorithm": "rsa", "provider-id": "py-rsa", "key": k,
                           "padding-algorithm": p, **({"padding-hash": h} if h else {})}
    keyrings = [
        ("aes256", [aes256]),
        ("aes128", [aes128]),
        ("rsa-pkcs1", [rsa("pkcs1", None, "rsa-private")]),
        ("rsa-oaep-sha1", [rsa("oaep-mgf1", "sha1", "rsa-private")]),
        ("rsa-oaep-sha256", [rsa("oaep-mgf1", "sha256", "rsa-private")]),
        ("rsa-oaep-sha512", [rsa("oaep-mgf1", "sha512", "rsa-private")]),
        ("multi", [aes256, rsa("oaep-mgf1", "sha384", "rsa-private")]),
    ]
    suites = [a for a in Algorithm if a.name.startswith("AES") and a.kdf_input_len]
    frames = [0, 128, 4096, 1 << 20]
    plaintexts = {"empty": b"", "small": b"Hello, interop!", "mid": bytes(i % 251 for i in range(10000)),
                  "large": bytes(i % 253 for i in range(3 * (1 << 20) + 17))}
    for pname, data in plaintexts.items():
        with open(os.path.join(base, "plaintexts", pname), "wb") as f:
            f.write(data)
    tests = {}
    n = 0
    for suite in suites:
        committing = suite.is_committing()
        policy = CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT if committing else CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT
        client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=policy)
        for kname, mks in keyrings:
            frame = frames[n % len(frames)]
            pname = ["small", "mid", "empty", "small"][n % 4]
            ec = {} if n % 3 == 0 else {"purpose": "interop", "\u00e9t\u00e9": "\U0001D11E", "n": str(n)}
            n += 1
            # Encrypt with public keys only where RSA is used, as a real producer would.
            enc_mks = [dict(mk, key="rsa-public") if mk["encryption-algorithm"] == "rsa" else mk for mk in mks]
            ct, _ = client.encrypt(source=plaintexts[pname], key_provider=provider(keys, enc_mks),
                                   encryption_context=ec, algorithm=suite, frame_length=frame)
            name = "py-%04X-%s-f%d-%s" % (suite.algorithm_id, kname, frame, pname)
            with open(os.path.join(base, "ciphertexts", name), "wb") as f:
                f.write(ct)
            tests[name] = {
                "description": "Python ESDK 4.0.7: suite %04X, %s, frame %d, %s plaintext" % (suite.algorithm_id, kname, frame, pname),
                "ciphertext": "file://ciphertexts/" + name,
                "master-keys": mks,
                "commitment-policy": policy.name,
                "result": {"output": {"plaintext": "file://plaintexts/" + pname}},
            }
    # One large multi-frame message per committing suite.
    for suite in [Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384]:
        client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
        ct, _ = client.encrypt(source=plaintexts["large"], key_provider=provider(keys, [aes256]),
                               encryption_context={"size": "large"}, algorithm=suite, frame_length=1 << 20)
        name = "py-%04X-aes256-f1048576-large" % suite.algorithm_id
        with open(os.path.join(base, "ciphertexts", name), "wb") as f:
            f.write(ct)
        tests[name] = {"description": "Python ESDK 4.0.7: large", "ciphertext": "file://ciphertexts/" + name,
                       "master-keys": [aes256], "commitment-policy": "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
                       "result": {"output": {"plaintext": "file://plaintexts/large"}}}
    with open(os.path.join(base, "keys.json"), "w") as f:
        json.dump({"manifest": {"type": "keys", "version": 3}, "keys": keys}, f, indent=1)
    with open(os.path.join(base, "manifest.json"), "w") as f:
        json.dump({"manifest": {"type": "awses-decrypt", "version": 4}, "keys": "file://keys.json", "tests": tests}, f, indent=1)
    print("wrote %d messages" % len(tests))
    return 0


def encrypt_kms(base, arn, decrypt_arn):
    os.makedirs(os.path.join(base, "ciphertexts"), exist_ok=True)
    os.makedirs(os.path.join(base, "plaintexts"), exist_ok=True)
    keys = {"enc": {"type": "aws-kms", "key-id": arn}, "dec": {"type": "aws-kms", "key-id": decrypt_arn}}
    plaintexts = {"empty": b"", "record": b'{"Key": 12349999, "CommitTimestamp": "2022-07-18T20:00:00"}',
                  "mid": bytes(i % 251 for i in range(20000))}
    for pname, data in plaintexts.items():
        with open(os.path.join(base, "plaintexts", pname), "wb") as f:
            f.write(data)
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    tests = {}
    for suite in [Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY, Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384]:
        for pname, frame in [("empty", 4096), ("record", 4096), ("mid", 1024)]:
            ct, _ = client.encrypt(source=plaintexts[pname], key_provider=master_key(keys, {"type": "aws-kms-mrk-aware", "key": "enc"}),
                                   encryption_context={"stream": "orders"}, algorithm=suite, frame_length=frame)
            name = "py-kms-%04X-%s" % (suite.algorithm_id, pname)
            with open(os.path.join(base, "ciphertexts", name), "wb") as f:
                f.write(ct)
            tests[name] = {"description": "Python ESDK 4.0.7 KMS", "ciphertext": "file://ciphertexts/" + name,
                           "master-keys": [{"type": "aws-kms-mrk-aware", "key": "dec"}],
                           "commitment-policy": "REQUIRE_ENCRYPT_REQUIRE_DECRYPT",
                           "encryption-context": {"stream": "orders"},
                           "result": {"output": {"plaintext": "file://plaintexts/" + pname}}}
    with open(os.path.join(base, "keys.json"), "w") as f:
        json.dump({"manifest": {"type": "keys", "version": 3}, "keys": keys}, f, indent=1)
    with open(os.path.join(base, "manifest.json"), "w") as f:
        json.dump({"manifest": {"type": "awses-decrypt", "version": 4}, "keys": "file://keys.json", "tests": tests}, f, indent=1)
    print("wrote %d messages" % len(tests))
    return 0


def kinesis_deaggregate(path, arn, region):
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    os.environ["AWS_REGION"] = region
    os.environ["AWS_DEFAULT_REGION"] = region
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    keys = MRKAwareStrictAwsKmsMasterKeyProvider(key_ids=[arn])
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            plaintext, _ = client.decrypt(source=base64.b64decode(rec["data"]), key_provider=keys)
            # A Lambda event record, as the deaggregator expects it.
            event = {"eventSource": "aws:kinesis", "eventID": "shardId-0:" + rec["sequenceNumber"],
                     "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": rec["partitionKey"],
                                 "sequenceNumber": rec["sequenceNumber"], "approximateArrivalTimestamp": 0,
                                 "data": base64.b64encode(plaintext).decode()}}
            for user in iter_deaggregate_records([event]):
                data = user["kinesis"]["data"]
                data = data.decode() if isinstance(data, bytes) else data
                print(json.dumps({"partitionKey": user["kinesis"]["partitionKey"], "data": data,
                                  "subSequenceNumber": user["kinesis"].get("subSequenceNumber")}))
    return 0


if __name__ == "__main__":
    verbs = {"decrypt": (decrypt, 3), "encrypt": (encrypt, 3), "encrypt-kms": (encrypt_kms, 5),
             "kinesis-deaggregate": (kinesis_deaggregate, 5)}
    if len(sys.argv) < 2 or sys.argv[1] not in verbs or len(sys.argv) != verbs[sys.argv[1]][1]:
        sys.exit(__doc__)
    sys.exit(verbs[sys.argv[1]][0](*sys.argv[2:]))
