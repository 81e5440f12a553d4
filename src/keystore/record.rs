//! The DynamoDB record of a branch key and the KMS encryption context it is bound to (spec
//! `framework/branch-key-store.md`, "Record Format", "Encryption Context").
//!
//! Every attribute of an item except `enc` is authenticated: the item becomes the encryption
//! context of the KMS call that unwraps `enc` (with `tablename` set to the logical store name,
//! which the item does not hold), so an item changed in the table fails to unwrap.

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::EncryptionContext;

pub(crate) const BRANCH_KEY_ID: &str = "branch-key-id";
pub(crate) const TYPE: &str = "type";
pub(crate) const CREATE_TIME: &str = "create-time";
pub(crate) const HIERARCHY_VERSION: &str = "hierarchy-version";
pub(crate) const TABLE_NAME: &str = "tablename";
pub(crate) const KMS_ARN: &str = "kms-arn";
pub(crate) const ENC: &str = "enc";
pub(crate) const VERSION: &str = "version";
pub(crate) const VERSION_PREFIX: &str = "branch:version:";
pub(crate) const ACTIVE: &str = "branch:ACTIVE";
pub(crate) const BEACON: &str = "beacon:ACTIVE";
/// Prefix of the custom encryption context's attributes.
pub(crate) const CUSTOM_PREFIX: &str = "aws-crypto-ec:";

/// The longest KMS `CiphertextBlob` (KMS' `CiphertextType`).
pub(crate) const MAX_CIPHERTEXT_LEN: usize = 6144;
/// The longest KMS key id (KMS' `KeyIdType`).
const MAX_KEY_ID_LEN: usize = 2048;

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// The sort key (`type`) of a branch key version's item.
pub(crate) fn version_type(version: &str) -> String {
    format!("{VERSION_PREFIX}{version}")
}

/// Checks that `item` is a branch key record and builds the context its `enc` is bound to
/// ("Record Format"; the MPL's `BranchKeyItem?` and `ToBranchKeyContext`). Returns the context
/// and the wrapped key.
pub(crate) fn item_context(item: &Item, logical_name: &str) -> Result<(EncryptionContext, Vec<u8>), String> {
    let string = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.as_str()),
        Some(_) => Err(format!("attribute {name:?} is not a string")),
        None => Err(format!("attribute {name:?} is missing")),
    };
    let id = string(BRANCH_KEY_ID)?;
    let kind = string(TYPE)?;
    string(CREATE_TIME)?;
    let kms_arn = string(KMS_ARN)?;
    if !(1..=MAX_KEY_ID_LEN).contains(&kms_arn.len()) {
        return Err(format!("{KMS_ARN:?} is {} bytes; KMS key ids are 1 to {MAX_KEY_ID_LEN}", kms_arn.len()));
    }
    if id.is_empty() || kind.is_empty() {
        return Err(format!("{BRANCH_KEY_ID:?} and {TYPE:?} must not be empty"));
    }
    let hierarchy_version = match item.get(HIERARCHY_VERSION) {
        Some(AttributeValue::N(n)) => n.as_str(),
        Some(_) => return Err(format!("attribute {HIERARCHY_VERSION:?} is not a number")),
        None => return Err(format!("attribute {HIERARCHY_VERSION:?} is missing")),
    };
    let enc = match item.get(ENC) {
        Some(AttributeValue::B(b)) if (1..=MAX_CIPHERTEXT_LEN).contains(&b.as_ref().len()) => b.as_ref().to_vec(),
        Some(AttributeValue::B(b)) => {
            return Err(format!("{ENC:?} is {} bytes; KMS ciphertexts are 1 to {MAX_CIPHERTEXT_LEN}", b.as_ref().len()))
        }
        Some(_) => return Err(format!("attribute {ENC:?} is not binary")),
        None => return Err(format!("attribute {ENC:?} is missing")),
    };
    if item.contains_key(TABLE_NAME) {
        return Err(format!("the item holds a {TABLE_NAME:?} attribute, which is reserved for the logical store name"));
    }
    let active = kind == ACTIVE;
    match item.get(VERSION) {
        Some(AttributeValue::S(v)) if active && v.len() > VERSION_PREFIX.len() && v.starts_with(VERSION_PREFIX) => {}
        Some(_) if active => return Err(format!("the ACTIVE item's {VERSION:?} is not \"{VERSION_PREFIX}<version>\"")),
        Some(_) => return Err(format!("only the ACTIVE item has a {VERSION:?} attribute")),
        None if active => return Err(format!("the ACTIVE item has no {VERSION:?} attribute")),
        None if kind == BEACON || (kind.len() > VERSION_PREFIX.len() && kind.starts_with(VERSION_PREFIX)) => {}
        None => return Err(format!("type {kind:?} is not a branch key or beacon key type")),
    }
    let mut context = EncryptionContext::new();
    for (name, value) in item {
        match (name.as_str(), value) {
            (ENC, _) => {}
            (HIERARCHY_VERSION, _) => {
                context.insert(name.clone(), hierarchy_version);
            }
            (_, AttributeValue::S(s)) => {
                context.insert(name.clone(), s.clone());
            }
            _ => return Err(format!("attribute {name:?} is not a string")),
        }
    }
    context.insert(TABLE_NAME, logical_name);
    Ok((context, enc))
}

/// The item storing `enc` under `context` (the MPL's `ToAttributeMap`): every pair but
/// `tablename`, `hierarchy-version` as a number.
pub(crate) fn to_item(context: &EncryptionContext, enc: Vec<u8>) -> Item {
    let mut item: Item = context
        .iter()
        .filter(|(k, _)| *k != TABLE_NAME)
        .map(|(k, v)| {
            let value =
                if k == HIERARCHY_VERSION { AttributeValue::N(v.to_owned()) } else { AttributeValue::S(v.to_owned()) };
            (k.to_owned(), value)
        })
        .collect();
    item.insert(ENC.to_owned(), AttributeValue::B(Blob::new(enc)));
    item
}

/// The DECRYPT_ONLY context of a new branch key version ("DECRYPT_ONLY Encryption Context").
pub(crate) fn decrypt_only_context(
    branch_key_id: &str,
    version: &str,
    create_time: &str,
    logical_name: &str,
    kms_arn: &str,
    custom: &EncryptionContext,
) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert(BRANCH_KEY_ID, branch_key_id);
    c.insert(TYPE, version_type(version));
    c.insert(CREATE_TIME, create_time);
    c.insert(TABLE_NAME, logical_name);
    c.insert(KMS_ARN, kms_arn);
    c.insert(HIERARCHY_VERSION, "1");
    for (k, v) in custom {
        c.insert(format!("{CUSTOM_PREFIX}{k}"), v);
    }
    c
}

/// The ACTIVE copy's context: the DECRYPT_ONLY one, typed `branch:ACTIVE`, with `version`.
pub(crate) fn active_context(decrypt_only: &EncryptionContext) -> EncryptionContext {
    let mut c = decrypt_only.clone();
    let version = c.insert(TYPE, ACTIVE).unwrap_or_default();
    c.insert(VERSION, version);
    c
}

/// The beacon key's context: the DECRYPT_ONLY one, typed `beacon:ACTIVE`.
pub(crate) fn beacon_context(decrypt_only: &EncryptionContext) -> EncryptionContext {
    let mut c = decrypt_only.clone();
    c.insert(TYPE, BEACON);
    c
}

/// A new version's DECRYPT_ONLY context from the current ACTIVE one (the MPL's
/// `NewVersionFromActiveBranchKeyEncryptionContext`): every other pair, `kms-arn` and the custom
/// context included, carries over unchanged.
pub(crate) fn new_version_context(active: &EncryptionContext, version: &str, create_time: &str) -> EncryptionContext {
    let mut c = active.clone();
    c.remove(VERSION);
    c.insert(TYPE, version_type(version));
    c.insert(CREATE_TIME, create_time);
    c
}

/// The branch key version an authenticated context names ("Branch Key Materials From
/// Authenticated Encryption Context").
pub(crate) fn version_of(context: &EncryptionContext) -> Option<&str> {
    let versioned = if context.get(TYPE) == Some(ACTIVE) { context.get(VERSION)? } else { context.get(TYPE)? };
    versioned.strip_prefix(VERSION_PREFIX).filter(|v| !v.is_empty())
}

/// The custom encryption context of an authenticated context: its `aws-crypto-ec:` pairs,
/// prefix removed.
pub(crate) fn custom_context(context: &EncryptionContext) -> EncryptionContext {
    context.iter().filter_map(|(k, v)| k.strip_prefix(CUSTOM_PREFIX).map(|k| (k.to_owned(), v.to_owned()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom() -> EncryptionContext {
        [("department", "admin")].into_iter().collect()
    }

    #[test]
    fn contexts_round_trip_through_items() {
        let arn = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let d = decrypt_only_context("bk", "83eec007-5659-4554-bf11-699b90f41ac6", "t", "store", arn, &custom());
        let a = active_context(&d);
        let b = beacon_context(&d);
        assert_eq!(a.get(TYPE), Some(ACTIVE));
        assert_eq!(a.get(VERSION), Some("branch:version:83eec007-5659-4554-bf11-699b90f41ac6"));
        assert_eq!(b.get(TYPE), Some(BEACON));
        assert_eq!(b.get(VERSION), None);
        for context in [&d, &a, &b] {
            let item = to_item(context, vec![7; 3]);
            assert!(!item.contains_key(TABLE_NAME));
            assert_eq!(item.get(HIERARCHY_VERSION), Some(&AttributeValue::N("1".into())));
            assert_eq!(item.get("aws-crypto-ec:department"), Some(&AttributeValue::S("admin".into())));
            let (back, enc) = item_context(&item, "store").unwrap();
            assert_eq!(&back, context);
            assert_eq!(enc, vec![7; 3]);
        }
        assert_eq!(version_of(&d), Some("83eec007-5659-4554-bf11-699b90f41ac6"));
        assert_eq!(version_of(&a), version_of(&d));
        assert_eq!(version_of(&b), None);
        assert_eq!(custom_context(&a), custom());
        let next = new_version_context(&a, "v2", "t2");
        assert_eq!(next.get(TYPE), Some("branch:version:v2"));
        assert_eq!(next.get(VERSION), None);
        assert_eq!(next.get(KMS_ARN), Some(arn));
        assert_eq!(next.get("aws-crypto-ec:department"), Some("admin"));
    }

    #[test]
    fn malformed_items_are_refused_with_the_attribute_named() {
        let arn = "arn:aws:kms:us-west-2:111122223333:key/k";
        let d = decrypt_only_context("bk", "v1", "t", "store", arn, &EncryptionContext::new());
        let good = to_item(&d, vec![1]);
        type Mutation = Box<dyn Fn(&mut Item)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("\"enc\" is missing", Box::new(|i| drop(i.remove(ENC)))),
            ("\"kms-arn\" is missing", Box::new(|i| drop(i.remove(KMS_ARN)))),
            (
                "KMS ciphertexts are 1 to 6144",
                Box::new(|i| drop(i.insert(ENC.into(), AttributeValue::B(Blob::new(vec![]))))),
            ),
            ("not a number", Box::new(|i| drop(i.insert(HIERARCHY_VERSION.into(), AttributeValue::S("1".into()))))),
            ("reserved", Box::new(|i| drop(i.insert(TABLE_NAME.into(), AttributeValue::S("x".into()))))),
            (
                "only the ACTIVE",
                Box::new(|i| drop(i.insert(VERSION.into(), AttributeValue::S("branch:version:x".into())))),
            ),
            (
                "not a branch key",
                Box::new(|i| drop(i.insert(TYPE.into(), AttributeValue::S("branch:version:".into())))),
            ),
            ("no \"version\"", Box::new(|i| drop(i.insert(TYPE.into(), AttributeValue::S(ACTIVE.into()))))),
            ("\"extra\" is not a string", Box::new(|i| drop(i.insert("extra".into(), AttributeValue::Bool(true))))),
        ];
        for (expected, mutate) in cases {
            let mut item = good.clone();
            mutate(&mut item);
            let err = item_context(&item, "store").unwrap_err();
            assert!(err.contains(expected), "{err} (expected {expected:?})");
        }
    }
}
