//! Keys and clients shared by the message fuzz targets (the seed corpus is encrypted with them).
#![allow(dead_code)]

use esdk::{Backend, Client, CommitmentPolicy, DefaultCmm, MultiKeyring, RawAesKeyring, RawRsaKeyring, RsaPadding};
use std::sync::Arc;

pub const AES_KEY: [u8; 32] = [0x11; 32];
pub const RSA_PRIVATE: &str = include_str!("../../tests/data/rsa-2048-private.pem");
pub const RSA_PUBLIC: &str = include_str!("../../tests/data/rsa-2048-public.pem");

/// Raw AES (namespace `fuzz`, name `aes`, the generator) plus raw RSA OAEP-SHA256
/// (`fuzz-rsa`/`rsa`), able to encrypt and decrypt.
pub fn cmm(backend: Backend) -> DefaultCmm {
    let aes = RawAesKeyring::with_backend("fuzz", "aes", &AES_KEY, backend).unwrap();
    let rsa = RawRsaKeyring::with_backend("fuzz-rsa", "rsa", RsaPadding::OaepSha256, backend)
        .unwrap()
        .danger_rustcrypto_rsa_decryption()
        .with_public_key_pem(RSA_PUBLIC)
        .unwrap()
        .with_private_key_pem(RSA_PRIVATE)
        .unwrap();
    let multi = MultiKeyring::new(Some(Arc::new(aes)), vec![Arc::new(rsa)]).unwrap();
    DefaultCmm::new(multi).with_backend(backend)
}

/// A client that accepts every suite, with small limits so hostile lengths stay cheap.
pub fn client(backend: Backend) -> Client {
    Client::builder()
        .commitment_policy(CommitmentPolicy::RequireEncryptAllowDecrypt)
        .max_encrypted_data_keys(16)
        .max_header_len(64 * 1024)
        .max_frame_length(1 << 20)
        .max_non_framed_body_len(1 << 20)
        .max_buffered_plaintext(1 << 20)
        .backend(backend)
        .build()
        .unwrap()
}
