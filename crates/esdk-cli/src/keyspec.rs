//! Key and context arguments of the `esdk` tool, in the attribute syntax of
//! `aws-encryption-cli` (`--wrapping-keys key=ARN region=R`, `discovery=true
//! discovery-account=ID discovery-partition=aws`), plus raw keys
//! (`namespace=NS,name=NAME,file=PATH[,padding=P]`).
//!
//! Errors are one line saying which attribute is wrong and what is accepted.

use std::path::PathBuf;

use esdk::context::EncryptionContext;
use esdk::crypto::RsaPadding;
use esdk::keyring::kms::KmsRsaAlgorithm;

/// One `--wrapping-keys` group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WrappingKeys {
    /// `key=ID…`: KMS keys (ARNs; aliases and key ids are accepted for encrypt only).
    Keys {
        /// The key identifiers, in order (the first one generates the data key).
        keys: Vec<String>,
        /// `region=`: the Region of identifiers that are not ARNs (an ARN names its own).
        region: Option<String>,
        /// `profile=`: the named AWS profile whose credentials call KMS.
        profile: Option<String>,
        /// `grant_tokens=`: KMS grant tokens sent with every call (repeatable).
        grant_tokens: Vec<String>,
    },
    /// `discovery=true discovery-account=ID… discovery-partition=P [discovery-region=R]`.
    Discovery {
        /// Accounts allowed (empty: no filter, which `esdk` refuses unless asked explicitly).
        accounts: Vec<String>,
        /// Partition of the filter.
        partition: Option<String>,
        /// Region for MRK-aware discovery.
        region: Option<String>,
        /// `profile=`: the named AWS profile whose credentials call KMS.
        profile: Option<String>,
        /// `grant_tokens=`: KMS grant tokens sent with every call (repeatable).
        grant_tokens: Vec<String>,
    },
}

/// The provider names `aws-encryption-cli` accepts for AWS KMS (`provider=` may be left out).
pub const KMS_PROVIDERS: [&str; 2] = ["aws-kms", "aws-encryption-sdk-cli::aws-kms"];

/// `discovery=` values, read as `aws-encryption-cli` reads them.
pub fn pseudo_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "y" => Some(true),
        "false" | "f" | "0" | "no" | "n" => Some(false),
        _ => None,
    }
}

/// A raw AES key: `namespace=NS,name=NAME,file=PATH` (the file holds 16, 24 or 32 raw bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawAesKeySpec {
    /// Key namespace (EDK provider id).
    pub namespace: String,
    /// Key name.
    pub name: String,
    /// File holding the key bytes.
    pub file: PathBuf,
}

/// A raw RSA key: `namespace=NS,name=NAME,file=PEM,padding=pkcs1|oaep-sha1|…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRsaKeySpec {
    /// Key namespace (EDK provider id).
    pub namespace: String,
    /// Key name.
    pub name: String,
    /// PEM file: a `PUBLIC KEY` (encrypt) or a `PRIVATE KEY` (decrypt).
    pub file: PathBuf,
    /// Padding.
    pub padding: RsaPadding,
}

/// An AWS KMS RSA key: `key=ARN,algorithm=RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1[,public-key=PEM]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsRsaKeySpec {
    /// The key ARN.
    pub key: String,
    /// KMS' name of the OAEP algorithm.
    pub algorithm: KmsRsaAlgorithm,
    /// The key's public half (`PUBLIC KEY` PEM, from `aws kms get-public-key`): needed to encrypt.
    pub public_key: Option<PathBuf>,
}

fn split_attr<'a>(attr: &'a str, syntax: &str) -> Result<(&'a str, &'a str), String> {
    match attr.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.trim(), v.trim())),
        _ => Err(format!("{attr:?} is not an attribute of the form name=value ({syntax})")),
    }
}

/// Parses one `--wrapping-keys` group, with the rules of `aws-encryption-cli` 4.x.
pub fn parse_wrapping_keys(attrs: &[String]) -> Result<WrappingKeys, String> {
    const SYNTAX: &str = "expected key=ARN… [region=R] [profile=P] [grant_tokens=T], or discovery=true \
                          discovery-account=ID… discovery-partition=aws";
    let mut keys = Vec::new();
    let (mut discovery, mut partition, mut region, mut profile, mut provider) = (None, None, None, None, None);
    let (mut accounts, mut grant_tokens) = (Vec::new(), Vec::new());
    let once = |slot: &mut Option<String>, k: &str, v: &str| match slot.replace(v.to_owned()) {
        Some(_) => Err(format!("{k}= given twice in one --wrapping-keys group")),
        None => Ok(()),
    };
    for attr in attrs {
        let (k, v) = split_attr(attr, SYNTAX)?;
        match k {
            // A key named twice in a group wraps once (as a master key provider adds a key once).
            "key" if keys.iter().any(|k| k == v) => {}
            "key" => keys.push(v.to_owned()),
            "discovery" => {
                let d = pseudo_bool(v).ok_or_else(|| format!("discovery={v}: expected true or false"))?;
                if discovery.replace(d).is_some() {
                    return Err("discovery= given twice in one --wrapping-keys group".into());
                }
            }
            "discovery-account" => accounts.push(v.to_owned()),
            "grant_tokens" => grant_tokens.push(v.to_owned()),
            "discovery-partition" => once(&mut partition, k, v)?,
            "discovery-region" | "region" => once(&mut region, k, v)?,
            "profile" => once(&mut profile, k, v)?,
            "provider" => once(&mut provider, k, v)?,
            _ => return Err(format!("unknown wrapping-keys attribute {k:?} ({SYNTAX})")),
        }
    }
    if let Some(p) = provider.filter(|p| !KMS_PROVIDERS.contains(&p.as_str())) {
        return Err(format!(
            "provider={p}: only AWS KMS (provider=aws-kms) is a --wrapping-keys provider here; \
             give raw keys with --raw-aes-key or --raw-rsa-key"
        ));
    }
    match discovery {
        Some(true) => {
            if !keys.is_empty() {
                return Err("discovery=true cannot be combined with key=… in one --wrapping-keys group".into());
            }
            if accounts.is_empty() != partition.is_none() {
                return Err("a discovery filter needs both discovery-account=… and discovery-partition=…".into());
            }
            Ok(WrappingKeys::Discovery { accounts, partition, region, profile, grant_tokens })
        }
        _ => {
            if !accounts.is_empty() || partition.is_some() {
                return Err("discovery-account / discovery-partition need discovery=true".into());
            }
            if keys.is_empty() {
                return Err(match discovery {
                    Some(false) => "discovery=false needs at least one key=…".into(),
                    _ => format!("no key=… given ({SYNTAX})"),
                });
            }
            Ok(WrappingKeys::Keys { keys, region, profile, grant_tokens })
        }
    }
}

fn raw_attrs(spec: &str, syntax: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',').map(|a| split_attr(a, syntax).map(|(k, v)| (k.to_owned(), v.to_owned()))).collect()
}

fn take(attrs: &mut Vec<(String, String)>, key: &str, syntax: &str) -> Result<String, String> {
    let pos = attrs.iter().position(|(k, _)| k == key).ok_or_else(|| format!("missing {key}=… ({syntax})"))?;
    Ok(attrs.remove(pos).1)
}

fn no_extra(attrs: &[(String, String)], syntax: &str) -> Result<(), String> {
    match attrs.first() {
        Some((k, _)) => Err(format!("unknown or repeated attribute {k:?} ({syntax})")),
        None => Ok(()),
    }
}

/// Parses `--raw-aes-key namespace=NS,name=NAME,file=PATH`.
pub fn parse_raw_aes(spec: &str) -> Result<RawAesKeySpec, String> {
    const SYNTAX: &str = "expected namespace=NS,name=NAME,file=PATH";
    let mut attrs = raw_attrs(spec, SYNTAX)?;
    let out = RawAesKeySpec {
        namespace: take(&mut attrs, "namespace", SYNTAX)?,
        name: take(&mut attrs, "name", SYNTAX)?,
        file: take(&mut attrs, "file", SYNTAX)?.into(),
    };
    no_extra(&attrs, SYNTAX)?;
    Ok(out)
}

/// Parses `--raw-rsa-key namespace=NS,name=NAME,file=PEM,padding=P`.
pub fn parse_raw_rsa(spec: &str) -> Result<RawRsaKeySpec, String> {
    const SYNTAX: &str =
        "expected namespace=NS,name=NAME,file=PEM,padding=pkcs1|oaep-sha1|oaep-sha256|oaep-sha384|oaep-sha512";
    let mut attrs = raw_attrs(spec, SYNTAX)?;
    let namespace = take(&mut attrs, "namespace", SYNTAX)?;
    let name = take(&mut attrs, "name", SYNTAX)?;
    let file = take(&mut attrs, "file", SYNTAX)?.into();
    let padding = match take(&mut attrs, "padding", SYNTAX)?.as_str() {
        "pkcs1" => RsaPadding::Pkcs1,
        "oaep-sha1" => RsaPadding::OaepSha1,
        "oaep-sha256" => RsaPadding::OaepSha256,
        "oaep-sha384" => RsaPadding::OaepSha384,
        "oaep-sha512" => RsaPadding::OaepSha512,
        p => return Err(format!("padding={p}: {SYNTAX}")),
    };
    no_extra(&attrs, SYNTAX)?;
    Ok(RawRsaKeySpec { namespace, name, file, padding })
}

/// Parses `--kms-rsa-key key=ARN,algorithm=ALG[,public-key=PEM]`.
pub fn parse_kms_rsa(spec: &str) -> Result<KmsRsaKeySpec, String> {
    const SYNTAX: &str = "expected key=ARN,algorithm=RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1[,public-key=PEM]";
    let mut attrs = raw_attrs(spec, SYNTAX)?;
    let key = take(&mut attrs, "key", SYNTAX)?;
    let algorithm = take(&mut attrs, "algorithm", SYNTAX)?;
    let algorithm = algorithm.parse().map_err(|_| format!("algorithm={algorithm}: {SYNTAX}"))?;
    let public_key = take(&mut attrs, "public-key", SYNTAX).ok().map(PathBuf::from);
    no_extra(&attrs, SYNTAX)?;
    Ok(KmsRsaKeySpec { key, algorithm, public_key })
}

/// `--hierarchy key-store=TABLE,kms-key=ARN,branch-key-id=ID[,logical-name=NAME][,ttl=SECONDS][,region=R]`.
#[derive(Clone, Debug, PartialEq)]
pub struct HierarchySpec {
    /// The key store's DynamoDB table.
    pub table: String,
    /// The KMS key ARN wrapping its branch keys.
    pub kms_key: String,
    /// The branch key id.
    pub branch_key_id: String,
    /// The logical store name (default: the table name).
    pub logical_name: String,
    /// How long an unwrapped branch key is used (default 600 s).
    pub ttl: std::time::Duration,
    /// The Region of the table (default: the key ARN's; KMS is called in the ARN's Region).
    pub region: Option<String>,
}

/// Parses `--hierarchy` (see [`HierarchySpec`]).
pub fn parse_hierarchy(spec: &str) -> Result<HierarchySpec, String> {
    const SYNTAX: &str =
        "expected key-store=TABLE,kms-key=ARN,branch-key-id=ID[,logical-name=NAME][,ttl=SECONDS][,region=REGION]";
    let mut attrs = raw_attrs(spec, SYNTAX)?;
    let table = take(&mut attrs, "key-store", SYNTAX)?;
    let kms_key = take(&mut attrs, "kms-key", SYNTAX)?;
    let branch_key_id = take(&mut attrs, "branch-key-id", SYNTAX)?;
    let logical_name = take(&mut attrs, "logical-name", SYNTAX).unwrap_or_else(|_| table.clone());
    let ttl = match take(&mut attrs, "ttl", SYNTAX) {
        Ok(v) => match v.parse::<u64>() {
            Ok(secs) if secs > 0 => std::time::Duration::from_secs(secs),
            _ => return Err(format!("ttl={v}: a whole number of seconds, at least 1 ({SYNTAX})")),
        },
        Err(_) => std::time::Duration::from_secs(600),
    };
    let region = take(&mut attrs, "region", SYNTAX).ok();
    no_extra(&attrs, SYNTAX)?;
    Ok(HierarchySpec { table, kms_key, branch_key_id, logical_name, ttl, region })
}

/// `--caching capacity=N max_age=SECONDS [max_messages_encrypted=N] [max_bytes_encrypted=N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CachingSpec {
    /// Cache entries.
    pub capacity: usize,
    /// Entry lifetime.
    pub max_age: std::time::Duration,
    /// Messages per data key.
    pub max_messages: Option<u64>,
    /// Plaintext bytes per data key.
    pub max_bytes: Option<u64>,
}

/// Parses `--caching` attributes (space- or comma-separated).
pub fn parse_caching(attrs: &[String]) -> Result<CachingSpec, String> {
    const SYNTAX: &str = "expected capacity=N max_age=SECONDS [max_messages_encrypted=N] [max_bytes_encrypted=N]";
    let (mut capacity, mut max_age, mut max_messages, mut max_bytes) = (None, None, None, None);
    for attr in attrs.iter().flat_map(|a| a.split(',')) {
        let (k, v) = split_attr(attr, SYNTAX)?;
        let int = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}={v}: not a whole number ({SYNTAX})"));
        match k {
            "capacity" => capacity = Some(int(v)?),
            "max_age" => {
                let secs: f64 = v.parse().map_err(|_| format!("max_age={v}: not a number of seconds"))?;
                if secs.is_nan() || secs <= 0.0 {
                    return Err(format!("max_age={v}: must be greater than 0"));
                }
                let age = std::time::Duration::try_from_secs_f64(secs)
                    .map_err(|_| format!("max_age={v}: too large for a duration"))?;
                max_age = Some(age);
            }
            "max_messages_encrypted" => max_messages = Some(int(v)?),
            "max_bytes_encrypted" => max_bytes = Some(int(v)?),
            _ => return Err(format!("unknown caching attribute {k:?} ({SYNTAX})")),
        }
    }
    let capacity =
        capacity.filter(|c| *c > 0).ok_or_else(|| format!("capacity=N (at least 1) is required ({SYNTAX})"))?;
    let max_age = max_age.ok_or_else(|| format!("max_age=SECONDS is required ({SYNTAX})"))?;
    Ok(CachingSpec { capacity: capacity as usize, max_age, max_messages, max_bytes })
}

/// Parses `-c key=value` pairs into a context (keys must be unique).
pub fn parse_context(pairs: &[String]) -> Result<EncryptionContext, String> {
    let mut ec = EncryptionContext::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not key=value"))?;
        if k.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        if ec.insert(k, v).is_some() {
            return Err(format!("encryption context key {k:?} given twice"));
        }
    }
    Ok(ec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hierarchy() {
        let spec = parse_hierarchy("key-store=t,kms-key=arn:k,branch-key-id=b").unwrap();
        assert_eq!((spec.logical_name.as_str(), spec.ttl.as_secs(), spec.region), ("t", 600, None));
        let spec = parse_hierarchy("key-store=t,kms-key=arn:k,branch-key-id=b,logical-name=n,ttl=60,region=r").unwrap();
        assert_eq!((spec.logical_name.as_str(), spec.ttl.as_secs(), spec.region.as_deref()), ("n", 60, Some("r")));
        for bad in [
            "key-store=t,kms-key=arn:k",
            "key-store=t,kms-key=k,branch-key-id=b,ttl=0",
            "key-store=t,kms-key=k,branch-key-id=b,x=1",
        ] {
            assert!(parse_hierarchy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wrapping_keys() {
        assert_eq!(
            parse_wrapping_keys(&s(&["key=arn:a", "key=arn:b"])).unwrap(),
            WrappingKeys::Keys { keys: s(&["arn:a", "arn:b"]), region: None, profile: None, grant_tokens: vec![] }
        );
        // aws-encryption-cli's spellings: the plugin's provider name, pseudo-booleans, a Region
        // and a profile for the key's client, grant tokens.
        assert_eq!(
            parse_wrapping_keys(&s(&[
                "provider=aws-encryption-sdk-cli::aws-kms",
                "key=alias/a",
                "region=eu-west-1",
                "profile=p",
                "grant_tokens=g",
            ]))
            .unwrap(),
            WrappingKeys::Keys {
                keys: s(&["alias/a"]),
                region: Some("eu-west-1".into()),
                profile: Some("p".into()),
                grant_tokens: s(&["g"])
            }
        );
        assert!(matches!(parse_wrapping_keys(&s(&["discovery=Yes"])).unwrap(), WrappingKeys::Discovery { .. }));
        assert_eq!(
            parse_wrapping_keys(&s(&["discovery=true", "discovery-account=1", "discovery-partition=aws"])).unwrap(),
            WrappingKeys::Discovery {
                accounts: s(&["1"]),
                partition: Some("aws".into()),
                region: None,
                profile: None,
                grant_tokens: vec![]
            }
        );
        for bad in [
            &["key="][..],
            &["bogus=1"],
            &["discovery=true", "key=a"],
            &["discovery=true", "discovery-account=1"],
            &[],
            &["discovery=false"],
            &["discovery=maybe"],
            &["provider=raw", "key=a"],
            &["provider=aws-kms", "provider=aws-kms", "key=a"],
            &["key=a", "discovery-partition=aws"],
        ] {
            assert!(parse_wrapping_keys(&s(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn raw_keys() {
        let a = parse_raw_aes("namespace=ns,name=k,file=/tmp/k").unwrap();
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("ns", "k"));
        assert!(parse_raw_aes("namespace=ns,name=k").is_err());
        assert!(parse_raw_aes("namespace=ns,name=k,file=f,extra=1").is_err());
        let r = parse_raw_rsa("namespace=ns,name=k,file=f.pem,padding=oaep-sha256").unwrap();
        assert_eq!(r.padding, RsaPadding::OaepSha256);
        assert!(parse_raw_rsa("namespace=ns,name=k,file=f.pem,padding=oaep-md5").is_err());
    }

    #[test]
    fn caching() {
        let c = parse_caching(&s(&["capacity=10", "max_age=1.5", "max_messages_encrypted=100"])).unwrap();
        assert_eq!((c.capacity, c.max_messages), (10, Some(100)));
        assert_eq!(c.max_age, std::time::Duration::from_millis(1500));
        assert!(parse_caching(&s(&["capacity=0", "max_age=1"])).is_err());
        assert!(parse_caching(&s(&["capacity=1"])).is_err());
        assert!(parse_caching(&s(&["capacity=1", "max_age=-1"])).is_err());
        assert!(parse_caching(&s(&["capacity=1,max_age=2"])).is_ok());
    }

    /// Found by the `keyspec` fuzz target: an enormous max_age panicked in `Duration::from_secs_f64`.
    #[test]
    fn fuzz_keyspec_huge_max_age_is_an_error_not_a_panic() {
        let err = parse_caching(&s(&["capacity=10", "max_age=88888888888888888860.500"])).unwrap_err();
        assert!(err.contains("too large"), "{err}");
        assert!(parse_caching(&s(&["capacity=10", "max_age=inf"])).is_err());
    }

    #[test]
    fn context() {
        let ec = parse_context(&s(&["a=1", "b=x=y"])).unwrap();
        assert_eq!(ec.get("b"), Some("x=y"));
        assert!(parse_context(&s(&["a=1", "a=2"])).is_err());
        assert!(parse_context(&s(&["=1"])).is_err());
        assert!(parse_context(&s(&["novalue"])).is_err());
    }
}
