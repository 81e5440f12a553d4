//! AWS KMS key identifiers and ARNs (spec `framework/aws-kms/aws-kms-key-arn.md`,
//! `aws-kms-mrk-match-for-decrypt.md`, `aws-kms-mrk-are-unique.md`).

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// The resource type of a KMS ARN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `key/<id>`
    Key,
    /// `alias/<name>`
    Alias,
}

/// A parsed AWS KMS ARN: `arn:<partition>:kms:<region>:<account>:<key|alias>/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmsArn {
    partition: String,
    region: String,
    account: String,
    resource_type: ResourceType,
    resource_id: String,
}

impl KmsArn {
    /// Parses and validates an ARN (spec `aws-kms-key-arn.md`, "A valid AWS KMS ARN": exactly
    /// five `:` delimiting six parts); every part must be present and the service must be `kms`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::InvalidConfig(format!("{s:?} is not a valid AWS KMS ARN: {why}"));
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad("expected exactly five ':' (arn:partition:kms:region:account:resource)"));
        }
        if parts[0] != "arn" {
            return Err(bad("it does not start with \"arn:\""));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("a part is empty"));
        }
        if parts[2] != "kms" {
            return Err(bad("the service is not kms"));
        }
        let (rtype, rid) =
            parts[5].split_once('/').ok_or_else(|| bad("the resource is not key/<id> or alias/<name>"))?;
        let resource_type = match rtype {
            "key" => ResourceType::Key,
            "alias" => ResourceType::Alias,
            _ => return Err(bad("the resource type is neither key nor alias")),
        };
        if rid.is_empty() {
            return Err(bad("the resource id is empty"));
        }
        Ok(Self {
            partition: parts[1].to_owned(),
            region: parts[3].to_owned(),
            account: parts[4].to_owned(),
            resource_type,
            resource_id: rid.to_owned(),
        })
    }

    /// Parses an ARN that must name a key (not an alias), as EDK provider info must.
    pub fn parse_key_arn(s: &str) -> Result<Self> {
        let arn = Self::parse(s)?;
        if arn.resource_type != ResourceType::Key {
            return Err(Error::InvalidConfig(format!("{s:?} is an alias ARN; a key ARN (…:key/<id>) is required")));
        }
        Ok(arn)
    }

    /// Partition (`aws`, `aws-cn`, ...).
    pub fn partition(&self) -> &str {
        &self.partition
    }
    /// Region.
    pub fn region(&self) -> &str {
        &self.region
    }
    /// Account id.
    pub fn account(&self) -> &str {
        &self.account
    }
    /// Resource type.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }
    /// Key id or alias name.
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// Whether this is a multi-Region key: a `key` whose id starts with `mrk-`.
    pub fn is_mrk(&self) -> bool {
        self.resource_type == ResourceType::Key && self.resource_id.starts_with("mrk-")
    }

    /// The same ARN in another Region (used by MRK-aware discovery).
    pub fn with_region(&self, region: &str) -> Self {
        Self { region: region.to_owned(), ..self.clone() }
    }
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = match self.resource_type {
            ResourceType::Key => "key",
            ResourceType::Alias => "alias",
        };
        write!(f, "arn:{}:kms:{}:{}:{t}/{}", self.partition, self.region, self.account, self.resource_id)
    }
}

/// Any identifier KMS accepts as `KeyId`: an ARN, `alias/<name>`, or a bare key id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyIdentifier {
    /// A key or alias ARN.
    Arn(KmsArn),
    /// `alias/<name>`.
    Alias(String),
    /// A bare key id (`1234abcd-…` or `mrk-…`).
    KeyId(String),
}

impl KeyIdentifier {
    /// Parses an identifier; strings starting with `arn:` must be valid ARNs.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(Error::InvalidConfig("an empty AWS KMS key identifier".into()));
        }
        if s.starts_with("arn:") {
            return Ok(Self::Arn(KmsArn::parse(s)?));
        }
        if let Some(name) = s.strip_prefix("alias/") {
            if name.is_empty() {
                return Err(Error::InvalidConfig(format!("{s:?} is an alias with an empty name")));
            }
            return Ok(Self::Alias(s.to_owned()));
        }
        if s.contains(':') || s.contains('/') {
            return Err(Error::InvalidConfig(format!("{s:?} is neither a KMS ARN, an alias nor a key id")));
        }
        Ok(Self::KeyId(s.to_owned()))
    }

    /// Whether this identifies a multi-Region key (`aws-kms-key-arn.md`, "Identifier is MRK").
    pub fn is_mrk(&self) -> bool {
        match self {
            Self::Arn(a) => a.is_mrk(),
            Self::Alias(_) => false,
            Self::KeyId(id) => id.starts_with("mrk-"),
        }
    }

    /// The key ARN, when this is one.
    pub fn key_arn(&self) -> Option<&KmsArn> {
        match self {
            Self::Arn(a) if a.resource_type == ResourceType::Key => Some(a),
            _ => None,
        }
    }

    /// The resource id used by the MRK uniqueness check.
    fn mrk_resource_id(&self) -> Option<&str> {
        match self {
            Self::Arn(a) if a.is_mrk() => Some(&a.resource_id),
            Self::KeyId(id) if id.starts_with("mrk-") => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Arn(a) => a.fmt(f),
            Self::Alias(s) | Self::KeyId(s) => f.write_str(s),
        }
    }
}

/// "AWS KMS MRK Match for Decrypt": identical identifiers match; otherwise both must be MRK ARNs
/// equal in everything but the Region.
pub fn mrk_match(a: &KeyIdentifier, b: &KeyIdentifier) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (KeyIdentifier::Arn(x), KeyIdentifier::Arn(y)) if x.is_mrk() && y.is_mrk() => {
            x.partition == y.partition
                && x.account == y.account
                && x.resource_type == y.resource_type
                && x.resource_id == y.resource_id
        }
        _ => false,
    }
}

/// "AWS KMS MRK are unique": fails, naming every offender, if two identifiers name the same
/// multi-Region key (in any Region), since one keyring would then hold two replicas of one key.
pub fn check_mrks_unique<'a>(ids: impl IntoIterator<Item = &'a KeyIdentifier>) -> Result<()> {
    let mut by_id: BTreeMap<&str, Vec<&KeyIdentifier>> = BTreeMap::new();
    for id in ids {
        if let Some(rid) = id.mrk_resource_id() {
            by_id.entry(rid).or_default().push(id);
        }
    }
    let dups: Vec<String> =
        by_id.values().filter(|v| v.len() > 1).flat_map(|v| v.iter().map(|i| i.to_string())).collect();
    if dups.is_empty() {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "these identifiers name the same multi-Region key more than once: {}; list each MRK once \
             (the replica in this keyring's Region)",
            dups.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const B: &str = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
    const SRK: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_and_displays() {
        let a = KmsArn::parse(A).unwrap();
        assert_eq!((a.partition(), a.region(), a.account()), ("aws", "us-east-1", "111122223333"));
        assert!(a.is_mrk());
        assert_eq!(a.to_string(), A);
        assert_eq!(a.with_region("us-west-2").to_string(), B);
        let alias = KmsArn::parse("arn:aws:kms:us-east-1:111122223333:alias/mrk-looks-like").unwrap();
        assert!(!alias.is_mrk(), "an alias named mrk-… is not an MRK");
        assert!(KmsArn::parse_key_arn("arn:aws:kms:us-east-1:111122223333:alias/x").is_err());
        assert_eq!(KmsArn::parse("arn:aws:kms:r:a:key/with/slash").unwrap().resource_id(), "with/slash");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "arn:aws:kms:us-east-1:111122223333",
            "arn:aws:s3:us-east-1:111122223333:key/x",
            "arn::kms:us-east-1:111122223333:key/x",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:grant/x",
            "aws:kms:us-east-1:111122223333:key/x:y",
            "arn:aws:kms:us-east-1:111122223333:keyx",
        ] {
            assert!(KmsArn::parse(s).is_err(), "{s}");
        }
        // "A valid AWS KMS ARN: A string with 5 `:` that delimit following 6 parts"
        // (aws-kms-key-arn.md): a sixth `:` makes it invalid, also inside the resource.
        for s in ["arn:aws:kms:us-east-1:111122223333:key/mrk-1:extra", "arn:aws:kms:us-east-1:111122223333:alias/a:b"]
        {
            assert!(KmsArn::parse(s).is_err(), "{s}");
            assert!(KeyIdentifier::parse(s).is_err(), "{s}");
        }
        assert!(KeyIdentifier::parse("alias/").is_err());
        assert!(matches!(KeyIdentifier::parse("alias/a").unwrap(), KeyIdentifier::Alias(_)));
        assert!(KeyIdentifier::parse("mrk-abc").unwrap().is_mrk());
    }

    #[test]
    fn mrk_matching_ignores_only_the_region() {
        let a = KeyIdentifier::parse(A).unwrap();
        let b = KeyIdentifier::parse(B).unwrap();
        let srk = KeyIdentifier::parse(SRK).unwrap();
        assert!(mrk_match(&a, &b));
        assert!(!mrk_match(&a, &srk));
        let srk_west = KeyIdentifier::parse(&SRK.replace("us-east-1", "us-west-2")).unwrap();
        assert!(!mrk_match(&srk, &srk_west), "single-Region keys must match exactly");
        let other_account = KeyIdentifier::parse(&B.replace("111122223333", "444455556666")).unwrap();
        assert!(!mrk_match(&a, &other_account));
    }

    #[test]
    fn duplicate_mrks_are_refused() {
        let ids: Vec<KeyIdentifier> = [A, B, SRK].iter().map(|s| KeyIdentifier::parse(s).unwrap()).collect();
        let err = check_mrks_unique(&ids).unwrap_err().to_string();
        assert!(err.contains(A) && err.contains(B) && !err.contains(SRK), "{err}");
        assert!(check_mrks_unique(&ids[1..]).is_ok());
    }
}
