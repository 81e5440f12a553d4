//! The `_blocking` methods refuse to run inside a Tokio runtime (where they could wait forever for
//! work that runtime must do) with an error that names the async method, on both runtime
//! flavours, and work outside one.
#![cfg(any(feature = "kms", feature = "tokio"))]

use esdk::{Client, DefaultCmm, EncryptionContext, Error, ErrorKind, RawAesKeyring, SignedMessages};

fn cmm() -> DefaultCmm {
    DefaultCmm::new(RawAesKeyring::new("ns", "blocking", &[4u8; 32]).unwrap())
}

/// Every blocking entry point, called on the current thread.
fn every_blocking_call(message: &[u8]) -> Vec<Error> {
    let (client, cmm, ec) = (Client::new(), cmm(), EncryptionContext::new());
    let mut out = Vec::new();
    let mut errors = vec![
        client.encrypt_blocking(&cmm, b"x", &ec).unwrap_err(),
        client.encrypt_into_blocking(&cmm, b"x", &ec, &mut out).unwrap_err(),
        client.decrypt_blocking(&cmm, message, None).unwrap_err(),
        client.decrypt_unsigned_only_blocking(&cmm, message, None).unwrap_err(),
        client.decrypt_into_blocking(&cmm, message, None, &mut out).unwrap_err(),
    ];
    errors.push(client.encrypting_writer_blocking(&cmm, &ec, Vec::new()).err().unwrap());
    errors.push(client.encrypting_writer_sized_blocking(&cmm, &ec, 1, Vec::new()).err().unwrap());
    errors.push(client.decrypting_reader_blocking(&cmm, message, None, SignedMessages::default()).err().unwrap());
    errors
}

fn assert_refused(errors: Vec<Error>) {
    for e in errors {
        assert_eq!(e.kind(), ErrorKind::BlockingInAsyncContext, "{e}");
        let Error::BlockingInAsyncContext { call, call_async } = &e else { unreachable!() };
        assert!(call.ends_with("_blocking") && call.starts_with(call_async), "{call} / {call_async}");
        assert!(e.to_string().contains(".await"), "{e}");
        assert!(!e.is_retryable());
    }
}

#[test]
fn refused_at_once_on_a_current_thread_runtime() {
    let message = Client::new().encrypt_blocking(&cmm(), b"x", &EncryptionContext::new()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    assert_refused(rt.block_on(async { every_blocking_call(&message) }));
}

#[test]
fn refused_at_once_on_a_multi_thread_runtime() {
    let message = Client::new().encrypt_blocking(&cmm(), b"x", &EncryptionContext::new()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let errors = rt.block_on(async move { tokio::spawn(async move { every_blocking_call(&message) }).await.unwrap() });
    assert_refused(errors);
}

#[test]
fn the_async_methods_work_inside_and_the_blocking_ones_outside() {
    let (client, ec) = (Client::new(), EncryptionContext::new());
    let message = client.encrypt_blocking(&cmm(), b"outside", &ec).unwrap();
    assert_eq!(client.decrypt_blocking(&cmm(), &message, None).unwrap().plaintext.to_vec(), b"outside");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plaintext = rt.block_on(async { client.decrypt(&cmm(), &message, None).await.unwrap().plaintext });
    assert_eq!(*plaintext, b"outside");
}
