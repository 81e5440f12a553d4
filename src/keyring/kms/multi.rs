//! Multi-keyring constructors for KMS (spec `framework/aws-kms/aws-kms-multi-keyrings.md`,
//! `aws-kms-mrk-multi-keyrings.md`).

use std::sync::Arc;

use super::arn::{check_mrks_unique, KeyIdentifier};
use super::discovery::{DiscoveryFilter, KmsDiscoveryKeyring, KmsMrkDiscoveryKeyring};
use super::strict::{KmsKeyring, KmsMrkKeyring};
use super::ClientSupplier;
use crate::error::{Error, Result};
use crate::keyring::{Keyring, MultiKeyring};

/// The Region of an identifier's client: the ARN's, else the supplier's default.
fn region_of<'a>(id: &'a KeyIdentifier, supplier: &'a dyn ClientSupplier) -> Result<&'a str> {
    match id {
        KeyIdentifier::Arn(arn) => Ok(arn.region()),
        _ => supplier.default_region().ok_or_else(|| {
            Error::InvalidConfig(format!("{id} names no Region and no default Region is configured (set AWS_REGION)"))
        }),
    }
}

fn strict_multi(
    generator: Option<&str>,
    key_ids: &[&str],
    supplier: &dyn ClientSupplier,
    mrks_unique: bool,
    build: impl Fn(&str, Arc<dyn super::KmsClient>) -> Result<Arc<dyn Keyring>>,
) -> Result<MultiKeyring> {
    if generator.is_none() && key_ids.is_empty() {
        return Err(Error::InvalidConfig("a KMS multi-keyring needs a generator or at least one key id".into()));
    }
    let parsed: Vec<KeyIdentifier> =
        generator.iter().chain(key_ids.iter()).map(|s| KeyIdentifier::parse(s)).collect::<Result<_>>()?;
    if mrks_unique {
        check_mrks_unique(&parsed)?;
    }
    let mut rings = Vec::with_capacity(parsed.len());
    for id in &parsed {
        let client = supplier.client(region_of(id, supplier)?)?;
        rings.push(build(&id.to_string(), client)?);
    }
    let gen = if generator.is_some() { Some(rings.remove(0)) } else { None };
    MultiKeyring::new(gen, rings)
}

/// A multi-keyring of strict KMS keyrings: `generator` makes the data key, every key in
/// `key_ids` also wraps it; on decrypt each is tried. Two replicas of one MRK are accepted
/// (`aws-kms-multi-keyrings.md`, Strict Multi-Keyring, has no uniqueness rule: these keyrings
/// compare ARNs exactly, so replicas are distinct keys to them).
pub fn strict_multi_keyring(
    generator: Option<&str>,
    key_ids: &[&str],
    supplier: &dyn ClientSupplier,
    grant_tokens: &[String],
) -> Result<MultiKeyring> {
    strict_multi(generator, key_ids, supplier, false, |id, client| {
        Ok(Arc::new(KmsKeyring::new(id, client)?.with_grant_tokens(grant_tokens.to_vec())))
    })
}

/// As [`strict_multi_keyring`] with MRK-aware strict keyrings; two replicas of one MRK are
/// refused (`aws-kms-mrk-multi-keyrings.md`, via `aws-kms-mrk-are-unique.md`).
pub fn mrk_multi_keyring(
    generator: Option<&str>,
    key_ids: &[&str],
    supplier: &dyn ClientSupplier,
    grant_tokens: &[String],
) -> Result<MultiKeyring> {
    strict_multi(generator, key_ids, supplier, true, |id, client| {
        Ok(Arc::new(KmsMrkKeyring::new(id, client)?.with_grant_tokens(grant_tokens.to_vec())))
    })
}

/// One keyring per Region (built by `build` from that Region's client), all children of a
/// multi-keyring with no generator (`aws-kms-multi-keyrings.md`, discovery constructors).
fn per_region(
    regions: &[&str],
    supplier: &dyn ClientSupplier,
    build: impl Fn(&str, Arc<dyn super::KmsClient>) -> Result<Arc<dyn Keyring>>,
) -> Result<MultiKeyring> {
    if regions.is_empty() || regions.iter().any(|r| r.is_empty()) {
        return Err(Error::InvalidConfig("discovery needs at least one non-empty Region".into()));
    }
    let children = regions.iter().map(|r| build(r, supplier.client(r)?)).collect::<Result<Vec<_>>>()?;
    MultiKeyring::new(None, children)
}

/// One discovery keyring per Region, all children of a multi-keyring (no generator).
pub fn discovery_multi_keyring(
    regions: &[&str],
    filter: Option<DiscoveryFilter>,
    supplier: &dyn ClientSupplier,
    grant_tokens: &[String],
) -> Result<MultiKeyring> {
    per_region(regions, supplier, |_, client| {
        let ring = match &filter {
            Some(f) => KmsDiscoveryKeyring::with_filter(client, f.clone()),
            None => KmsDiscoveryKeyring::new(client),
        };
        Ok(Arc::new(ring.with_grant_tokens(grant_tokens.to_vec())))
    })
}

/// One MRK-aware discovery keyring per Region, all children of a multi-keyring.
pub fn mrk_discovery_multi_keyring(
    regions: &[&str],
    filter: Option<DiscoveryFilter>,
    supplier: &dyn ClientSupplier,
    grant_tokens: &[String],
) -> Result<MultiKeyring> {
    per_region(regions, supplier, |region, client| {
        let ring = KmsMrkDiscoveryKeyring::new(client, region, filter.clone())?;
        Ok(Arc::new(ring.with_grant_tokens(grant_tokens.to_vec())))
    })
}
