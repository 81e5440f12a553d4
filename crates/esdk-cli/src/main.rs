//! `esdk`: encrypt, decrypt and inspect AWS Encryption SDK messages from the command line.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use esdk::keyring::hierarchy::HierarchicalKeyring;
use esdk::keyring::kms::{
    discovery_multi_keyring, mrk_discovery_multi_keyring, mrk_multi_keyring, AwsSdkClientSupplier, ClientSupplier,
    DiscoveryFilter, KeyIdentifier, KmsArn, KmsRsaKeyring,
};
use esdk::{
    AlgorithmSuite, Backend, CachingCmm, Client, CommitmentPolicy, DefaultCmm, EncryptionContext, Error, ErrorKind,
    HeaderLimits, Keyring, LocalCache, MaterialsManager, MessageHeader, MultiKeyring, RawAesKeyring, RawRsaKeyring,
    SignedMessages,
};
use esdk_cli::keyspec::{self, WrappingKeys};
use serde_json::{json, Value};

mod keystore;
mod kinesis;
mod official;

#[derive(Parser)]
#[command(
    name = "esdk",
    version,
    about = "Encrypt, decrypt and inspect AWS Encryption SDK messages",
    long_about = None,
    after_help = "aws-encryption-cli command lines are accepted unchanged: esdk -e|-d|--decrypt-unsigned -i IN -o OUT \
                  -w key=ARN --metadata-output FILE|-S ... (esdk -e --help lists them; docs/aws-encryption-cli.md says \
                  where esdk differs)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log what happens (keyring decisions, KMS calls) to stderr; repeat for more detail.
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt files or standard input into ESDK messages.
    Encrypt(EncryptArgs),
    /// Decrypt ESDK messages.
    Decrypt(DecryptArgs),
    /// Print a message's header as JSON, without any key.
    Inspect(InspectArgs),
    /// Operate the cross-Region Kinesis replication: set up, fail over, report.
    Kinesis {
        #[command(subcommand)]
        command: kinesis::KinesisCommand,
    },
    /// Manage a branch key store (the AWS KMS Hierarchical keyring's DynamoDB table).
    Keystore {
        #[command(subcommand)]
        command: keystore::KeystoreCommand,
    },
}

/// The spec's policy names, as aws-encryption-cli spells them.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(clippy::enum_variant_names)]
enum PolicyArg {
    ForbidEncryptAllowDecrypt,
    RequireEncryptAllowDecrypt,
    RequireEncryptRequireDecrypt,
}

impl From<PolicyArg> for CommitmentPolicy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::ForbidEncryptAllowDecrypt => CommitmentPolicy::ForbidEncryptAllowDecrypt,
            PolicyArg::RequireEncryptAllowDecrypt => CommitmentPolicy::RequireEncryptAllowDecrypt,
            PolicyArg::RequireEncryptRequireDecrypt => CommitmentPolicy::RequireEncryptRequireDecrypt,
        }
    }
}

#[derive(Args)]
struct Common {
    /// Input file or directory, or - for standard input.
    #[arg(short, long, value_name = "PATH")]
    input: String,
    /// Output file or directory, or - for standard output.
    #[arg(short, long, value_name = "PATH")]
    output: String,
    /// Process a directory input recursively (the output must be a directory).
    #[arg(short, long)]
    recursive: bool,
    /// Suffix for output files named after their input (default .encrypted / .decrypted).
    #[arg(long, value_name = "SUFFIX")]
    suffix: Option<String>,
    /// Encryption context pairs. On encrypt: stored in the message. On decrypt: pairs the
    /// message must carry (and any required-only pairs it was encrypted with).
    #[arg(short = 'c', long = "encryption-context", num_args = 1.., value_name = "KEY=VALUE")]
    encryption_context: Vec<String>,
    /// AWS KMS keys: key=ARN [key=ARN...]; or discovery=true discovery-account=ID...
    /// discovery-partition=aws [discovery-region=REGION] (decrypt only). Repeatable.
    #[arg(short = 'w', long = "wrapping-keys", num_args = 1.., action = ArgAction::Append, value_name = "ATTR=VALUE")]
    wrapping_keys: Vec<String>,
    /// `--wrapping-keys` occurrences, one group each (filled from the raw matches).
    #[arg(skip)]
    wrapping_key_groups: Vec<Vec<String>>,
    /// A raw AES key: namespace=NS,name=NAME,file=PATH (PATH holds 16, 24 or 32 raw bytes). Repeatable.
    #[arg(long = "raw-aes-key", value_name = "SPEC")]
    raw_aes_key: Vec<String>,
    /// A raw RSA key: namespace=NS,name=NAME,file=PEM,padding=pkcs1|oaep-sha1|oaep-sha256|oaep-sha384|oaep-sha512.
    /// Encrypt takes a PUBLIC KEY PEM, decrypt a PRIVATE KEY PEM. Repeatable.
    #[arg(long = "raw-rsa-key", value_name = "SPEC")]
    raw_rsa_key: Vec<String>,
    /// An AWS KMS RSA key (ENCRYPT_DECRYPT): key=ARN,algorithm=RSAES_OAEP_SHA_256|RSAES_OAEP_SHA_1[,public-key=PEM].
    /// Encrypt wraps locally with the PUBLIC KEY PEM (aws kms get-public-key), no KMS call;
    /// decrypt calls KMS Decrypt in the ARN's Region. Unsigned suites only. Repeatable.
    #[arg(long = "kms-rsa-key", value_name = "SPEC")]
    kms_rsa_key: Vec<String>,
    /// An AWS KMS Hierarchical keyring: key-store=TABLE,kms-key=ARN,branch-key-id=ID
    /// [,logical-name=NAME (default TABLE)][,ttl=SECONDS (default 600)][,region=R: the table's
    /// Region (default the ARN's; KMS is called in the ARN's)]. The branch key is read from
    /// DynamoDB and unwrapped by KMS once per TTL; each message's data key is wrapped locally.
    /// Repeatable.
    #[arg(long = "hierarchy", value_name = "SPEC")]
    hierarchy: Vec<String>,
    /// Commitment policy (default require-encrypt-require-decrypt).
    #[arg(long = "commitment-policy", value_enum, value_name = "POLICY")]
    commitment_policy: Option<PolicyArg>,
    /// Refuse messages with more encrypted data keys than this (checked before any key is used).
    #[arg(long = "max-encrypted-data-keys", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_encrypted_data_keys: Option<u16>,
    /// Write (encrypt) / expect (decrypt) base64 instead of binary messages.
    #[arg(long)]
    encode: bool,
    /// Read base64 input (decoded before processing).
    #[arg(long)]
    decode: bool,
    /// Write one JSON line per file (header, context, EDKs, the key used) to FILE or - (stdout).
    #[arg(long = "metadata-output", value_name = "FILE")]
    metadata_output: Option<String>,
    /// No metadata (the default here; `-S` as aws-encryption-cli spells it).
    #[arg(short = 'S', long = "suppress-metadata", conflicts_with = "metadata_output")]
    suppress_metadata: bool,
    /// Reuse data keys across files: capacity=N max_age=SECONDS [max_messages_encrypted=N]
    /// [max_bytes_encrypted=N]. Cuts KMS calls for multi-file runs.
    #[arg(long, num_args = 1.., value_name = "ATTR=VALUE")]
    caching: Vec<String>,
    /// Replace existing output files (default: refuse).
    #[arg(long)]
    overwrite: bool,
    /// Crypto backend (aws-lc-rs or rustcrypto, if compiled in).
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
    /// Set when the command line was `aws-encryption-cli`'s (see [`official`]).
    #[arg(skip)]
    official: Option<official::Dialect>,
}

impl Common {
    /// `-q` of an aws-encryption-cli command line: no warnings.
    fn quiet(&self) -> bool {
        self.official.as_ref().is_some_and(|d| d.quiet)
    }
}

#[derive(Args)]
struct EncryptArgs {
    #[command(flatten)]
    common: Common,
    /// Algorithm suite: a name (AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384) or id (0x0578).
    #[arg(long, value_name = "SUITE")]
    algorithm: Option<String>,
    /// Frame length in bytes (1 to 4294967295, default 4096).
    #[arg(long = "frame-length", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    frame_length: Option<u32>,
}

#[derive(Args)]
struct DecryptArgs {
    #[command(flatten)]
    common: Common,
    /// Refuse signed messages right after reading their header.
    #[arg(long = "decrypt-unsigned")]
    decrypt_unsigned: bool,
    /// Read each message whole and decrypt it in memory. Without it, a file output holds the
    /// plaintext of a signed message in its private temporary file until the signature verifies
    /// (any size), and standard output holds up to 64 MiB in memory.
    #[arg(long)]
    buffer: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// The message file, or - for standard input.
    #[arg(short, long, value_name = "PATH")]
    input: String,
    /// The input is base64 text.
    #[arg(long)]
    decode: bool,
}

/// A failure with an optional hint for the operator.
struct Failure {
    message: String,
    hint: Option<String>,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let hint = hint_for(&e);
        Self { message: e.to_string(), hint }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Self { message, hint: None }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Error::from(e).into()
    }
}

fn fail<T>(message: impl Into<String>, hint: impl Into<String>) -> Result<T, Failure> {
    Err(Failure { message: message.into(), hint: Some(hint.into()) })
}

fn hint_for(e: &Error) -> Option<String> {
    match e {
        Error::NoDecryptableDataKey(report) => {
            // The key names (provider info) of the EDKs of one provider.
            let wrapped_under = |provider: &str| -> Vec<&str> {
                report.present.iter().filter(|(p, _)| p == provider).map(|(_, info)| info.as_str()).collect()
            };
            let arns = wrapped_under("aws-kms");
            let rsa = wrapped_under("aws-kms-rsa");
            let branch_keys = wrapped_under(esdk::keyring::hierarchy::HIERARCHY_PROVIDER_ID);
            // A store or KMS failure of a matching branch key is not cured by another
            // --hierarchy: that hint is only for EDKs of other branch keys.
            let store_failed = report.attempts.iter().any(|a| {
                a.provider_id == esdk::keyring::hierarchy::HIERARCHY_PROVIDER_ID
                    && matches!(a.outcome, esdk::error::EdkOutcome::Failed(_))
            });
            if arns.is_empty() && rsa.is_empty() && store_failed {
                Some(if report.is_retryable() {
                    "the branch key store or KMS failed transiently (see above): run it again".into()
                } else {
                    "the configured branch key could not be read or did not unwrap the data key (see above): check \
                     the key store table, its logical name and the KMS key"
                        .into()
                })
            } else if arns.is_empty() && rsa.is_empty() && !branch_keys.is_empty() {
                Some(format!(
                    "no configured key matches any of the {} EDK(s); the message is wrapped under the branch key(s) {} — \
                     add --hierarchy key-store=TABLE,kms-key=ARN,branch-key-id={}",
                    report.present.len(),
                    branch_keys.join(", "),
                    branch_keys[0]
                ))
            } else if arns.is_empty() && !rsa.is_empty() {
                Some(format!(
                    "no configured key matches any of the {} EDK(s); the message is wrapped under the KMS RSA key(s) {} — \
                     add --kms-rsa-key key={},algorithm=RSAES_OAEP_SHA_256 (or RSAES_OAEP_SHA_1, as the producer chose)",
                    report.present.len(),
                    rsa.join(", "),
                    rsa[0]
                ))
            } else if arns.is_empty() {
                let keys: Vec<String> = report.present.iter().map(|(p, i)| format!("{p}/{i}")).collect();
                Some(format!(
                    "no configured key matches any of the {} EDK(s): {}; pass the matching key with --raw-aes-key or --raw-rsa-key",
                    report.present.len(),
                    keys.join(", ")
                ))
            } else {
                Some(format!(
                    "no allow-listed key matches any of the {} EDK(s): {} — add it with --wrapping-keys key={}",
                    report.present.len(),
                    arns.join(", "),
                    arns[0]
                ))
            }
        }
        Error::Base64Input { .. } => Some("the input is base64 text: add --decode".into()),
        Error::CommitmentPolicy { encrypting: false, .. } => {
            Some("for messages written by older SDKs use --commitment-policy require-encrypt-allow-decrypt".into())
        }
        Error::SignedNotAllowed(_) => Some("drop --decrypt-unsigned to accept signed messages".into()),
        Error::LimitExceeded { what, .. } if what.contains("signature") => Some(
            "standard output cannot take back unverified plaintext: decrypt to a file with -o FILE (it is \
                 held in a private temporary file until the signature verifies), or hold the message in memory \
                 with --buffer"
                .into(),
        ),
        Error::EncryptionContextMismatch(_) => Some("check the -c/--encryption-context pairs".into()),
        _ => None,
    }
}

fn main() -> ExitCode {
    remove_partials_on_interrupt();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if official::is_official_command_line(&args) {
        return finish(official::parse(args).and_then(|(action, verbosity)| {
            init_logging(verbosity);
            match action {
                official::Action::Encrypt(a) => encrypt(a),
                official::Action::Decrypt(a) => decrypt(a),
            }
        }));
    }
    let matches = Cli::command().get_matches_from(args);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // clap's derive flattens repeated multi-value options; recover one group per occurrence.
    let groups: Vec<Vec<String>> = matches
        .subcommand()
        .and_then(|(_, m)| m.try_get_occurrences::<String>("wrapping_keys").ok().flatten())
        .map(|occ| occ.map(|o| o.cloned().collect()).collect())
        .unwrap_or_default();
    match &mut cli.command {
        Command::Encrypt(a) => a.common.wrapping_key_groups = groups,
        Command::Decrypt(a) => a.common.wrapping_key_groups = groups,
        Command::Inspect(_) | Command::Kinesis { .. } | Command::Keystore { .. } => {}
    }
    init_logging(cli.verbose);
    finish(match cli.command {
        Command::Encrypt(args) => encrypt(args),
        Command::Decrypt(args) => decrypt(args),
        Command::Inspect(args) => inspect(args),
        Command::Kinesis { command } => kinesis::run(command),
        Command::Keystore { command } => keystore::run(command),
    })
}

/// `-v`: debug logs to stderr, `-vv` and more: trace.
fn init_logging(verbose: u8) {
    if verbose > 0 {
        let level = if verbose > 1 { tracing::Level::TRACE } else { tracing::Level::DEBUG };
        tracing_subscriber::fmt().with_writer(io::stderr).with_max_level(level).with_target(false).init();
    }
}

fn finish(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("esdk: error: {}", f.message);
            if let Some(h) = f.hint {
                eprintln!("esdk: hint: {h}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The suites' names (Python's and Java's `Algorithm` names, those `aws-encryption-cli` takes).
const SUITE_NAMES: [(&str, u16); 11] = [
    ("AES_128_GCM_IV12_TAG16", 0x0014),
    ("AES_192_GCM_IV12_TAG16", 0x0046),
    ("AES_256_GCM_IV12_TAG16", 0x0078),
    ("AES_128_GCM_IV12_TAG16_HKDF_SHA256", 0x0114),
    ("AES_192_GCM_IV12_TAG16_HKDF_SHA256", 0x0146),
    ("AES_256_GCM_IV12_TAG16_HKDF_SHA256", 0x0178),
    ("AES_128_GCM_IV12_TAG16_HKDF_SHA256_ECDSA_P256", 0x0214),
    ("AES_192_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 0x0346),
    ("AES_256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384", 0x0378),
    ("AES_256_GCM_HKDF_SHA512_COMMIT_KEY", 0x0478),
    ("AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", 0x0578),
];

fn parse_suite(s: &str) -> Result<AlgorithmSuite, Failure> {
    let by_id = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    if let Some(suite) = u16::from_str_radix(by_id, 16).ok().and_then(AlgorithmSuite::from_id) {
        return Ok(suite);
    }
    let names = SUITE_NAMES;
    let upper = s.to_ascii_uppercase().replace('-', "_");
    let upper = upper.strip_prefix("ALG_").unwrap_or(&upper);
    let upper = upper.strip_suffix("_NO_KDF").unwrap_or(upper);
    names.iter().find(|(n, _)| *n == upper).and_then(|(_, id)| AlgorithmSuite::from_id(*id)).ok_or_else(|| Failure {
        message: format!("unknown algorithm suite {s:?}"),
        hint: Some(
            "use a suite id such as 0x0478 or 0x0578, or its name, e.g. AES_256_GCM_HKDF_SHA512_COMMIT_KEY".into(),
        ),
    })
}

fn build_client(common: &Common, suite: Option<AlgorithmSuite>, frame_length: Option<u32>) -> Result<Client, Failure> {
    let mut b = Client::builder();
    if let Some(p) = common.commitment_policy {
        b = b.commitment_policy(p.into());
    }
    if let Some(s) = suite {
        b = b.suite(s);
    }
    if let Some(f) = frame_length {
        // This client only encrypts with it; its decrypt limit must admit the frames it writes.
        b = b.frame_length(f).max_frame_length(f.max(esdk::DEFAULT_DECRYPT_BUFFER_LIMIT as u32));
    }
    if let Some(m) = common.max_encrypted_data_keys {
        b = b.max_encrypted_data_keys(m);
    }
    // `--max-length` (aws-encryption-cli, decrypt): the largest frame or non-framed body.
    if let (Some(max), None) = (common.official.as_ref().and_then(|d| d.max_length), frame_length) {
        b = b.max_frame_length(u32::try_from(max).unwrap_or(u32::MAX)).max_non_framed_body_len(max);
    }
    if let Some(name) = &common.backend {
        b = b.backend(name.parse::<Backend>()?);
    }
    Ok(b.build()?)
}

fn backend_of(common: &Common) -> Result<Backend, Failure> {
    Ok(match &common.backend {
        Some(n) => n.parse()?,
        None => Backend::default(),
    })
}

/// KMS clients from the standard AWS environment, created on first use.
fn supplier() -> Result<&'static AwsSdkClientSupplier, Failure> {
    static SUPPLIER: OnceLock<AwsSdkClientSupplier> = OnceLock::new();
    if let Some(s) = SUPPLIER.get() {
        return Ok(s);
    }
    let loaded = load_config(AwsSdkClientSupplier::from_env())?;
    Ok(SUPPLIER.get_or_init(|| loaded))
}

/// Drives loading an AWS configuration (it may read files and call credential providers) on a
/// short-lived runtime; KMS calls made later by the blocking API run on esdk's own.
fn load_config<F: std::future::Future>(load: F) -> Result<F::Output, Failure> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime to load the AWS configuration: {e}"))?;
    Ok(rt.block_on(load))
}

/// KMS clients for one `--wrapping-keys` group with its own `region=` (the Region of key ids
/// that are not ARNs) or `profile=` (a named profile's credentials).
fn supplier_with(region: Option<&str>, profile: Option<&str>) -> Result<AwsSdkClientSupplier, Failure> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = region {
        loader = loader.region(aws_config::Region::new(r.to_owned()));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    Ok(AwsSdkClientSupplier::from_sdk_config(load_config(loader.load())?))
}

fn read_key_file(path: &Path, what: &str) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()).into())
}

/// Builds the keyring from every key option; `encrypting` decides which key halves are needed.
fn build_keyring(common: &Common, encrypting: bool) -> Result<Arc<dyn Keyring>, Failure> {
    let backend = backend_of(common)?;
    let mut rings: Vec<Arc<dyn Keyring>> = Vec::new();
    // Key groups in order; those with their own Region or profile get their own clients.
    let mut kms_keys: Vec<(Vec<String>, Option<AwsSdkClientSupplier>, Vec<String>)> = Vec::new();
    for group in &common.wrapping_key_groups {
        match keyspec::parse_wrapping_keys(group).map_err(|e| format!("--wrapping-keys: {e}"))? {
            WrappingKeys::Keys { keys, region: None, profile: None, grant_tokens } => match kms_keys.last_mut() {
                Some((ks, None, tokens)) if *tokens == grant_tokens => ks.extend(keys),
                _ => kms_keys.push((keys, None, grant_tokens)),
            },
            WrappingKeys::Keys { keys, region, profile, grant_tokens } => {
                kms_keys.push((keys, Some(supplier_with(region.as_deref(), profile.as_deref())?), grant_tokens))
            }
            WrappingKeys::Discovery { .. } if encrypting => {
                return fail("discovery keyrings cannot encrypt", "name the KMS key with --wrapping-keys key=ARN")
            }
            WrappingKeys::Discovery { accounts, partition, region, profile, grant_tokens } => {
                let own = profile.as_deref().map(|p| supplier_with(None, Some(p))).transpose()?;
                let supplier: &AwsSdkClientSupplier = match &own {
                    Some(s) => s,
                    None => supplier()?,
                };
                let filter = match partition {
                    Some(p) => Some(DiscoveryFilter::new(&p, accounts)?),
                    None => {
                        if !common.quiet() {
                            eprintln!("esdk: warning: discovery without discovery-account/discovery-partition decrypts with any KMS key the credentials can use");
                        }
                        None
                    }
                };
                let ring = match region {
                    Some(r) => mrk_discovery_multi_keyring(&[r.as_str()], filter, supplier, &grant_tokens)?,
                    None => {
                        let region = supplier.default_region().map(str::to_owned).ok_or_else(|| Failure {
                            message: "discovery needs a Region".into(),
                            hint: Some("set AWS_REGION or add discovery-region=REGION".into()),
                        })?;
                        discovery_multi_keyring(&[region.as_str()], filter, supplier, &grant_tokens)?
                    }
                };
                rings.push(Arc::new(ring));
            }
        }
    }
    for (i, (keys, own, grant_tokens)) in kms_keys.iter().enumerate() {
        if !encrypting {
            for k in keys {
                if KeyIdentifier::parse(k)?.key_arn().is_none() {
                    return fail(
                        format!("--wrapping-keys key={k}: decryption allow-lists key ARNs only"),
                        "give the key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)",
                    );
                }
            }
        }
        let supplier: &AwsSdkClientSupplier = match own {
            Some(s) => s,
            None => supplier()?,
        };
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        // The first key of the first group generates the data key; every other key wraps it.
        let ring = if encrypting && i == 0 {
            mrk_multi_keyring(Some(refs[0]), &refs[1..], supplier, grant_tokens)?
        } else {
            mrk_multi_keyring(None, &refs, supplier, grant_tokens)?
        };
        rings.insert(i, Arc::new(ring));
    }
    for spec in &common.raw_aes_key {
        let s = keyspec::parse_raw_aes(spec).map_err(|e| format!("--raw-aes-key: {e}"))?;
        let key = zeroize::Zeroizing::new(read_key_file(&s.file, "raw AES key")?);
        rings.push(Arc::new(RawAesKeyring::with_backend(&s.namespace, &s.name, &key, backend)?));
    }
    for spec in &common.raw_rsa_key {
        let s = keyspec::parse_raw_rsa(spec).map_err(|e| format!("--raw-rsa-key: {e}"))?;
        let pem = zeroize::Zeroizing::new(read_key_file(&s.file, "RSA key")?);
        let pem = std::str::from_utf8(&pem).map_err(|_| format!("{} is not a PEM text file", s.file.display()))?;
        let ring = RawRsaKeyring::with_backend(&s.namespace, &s.name, s.padding, backend)?;
        let ring = match (encrypting, pem.contains("PRIVATE KEY")) {
            (true, true) => {
                return fail(
                    format!("{}: encryption needs the RSA public key", s.file.display()),
                    "pass the PUBLIC KEY PEM (openssl pkey -in key.pem -pubout)",
                )
            }
            (true, false) => ring.with_public_key_pem(pem)?,
            (false, _) => ring.with_private_key_pem(pem)?,
        };
        rings.push(Arc::new(ring));
    }
    for spec in &common.kms_rsa_key {
        let s = keyspec::parse_kms_rsa(spec).map_err(|e| format!("--kms-rsa-key: {e}"))?;
        let ring = KmsRsaKeyring::new(&s.key, s.algorithm)?.with_backend(backend);
        let ring = if encrypting {
            let Some(file) = &s.public_key else {
                return fail(
                    format!("--kms-rsa-key key={}: encryption needs the public key", s.key),
                    "add public-key=PEM (aws kms get-public-key --key-id ARN --output text --query PublicKey | base64 -d, \
                     then openssl pkey -pubin -inform DER -out key.pem)",
                );
            };
            let pem = read_key_file(file, "RSA public key")?;
            let pem = std::str::from_utf8(&pem).map_err(|_| format!("{} is not a PEM text file", file.display()))?;
            ring.with_public_key_pem(pem)?
        } else {
            // KmsRsaKeyring::new took only a key ARN: Decrypt goes to its Region.
            let arn = KmsArn::parse_key_arn(&s.key)?;
            ring.with_client(supplier()?.client(arn.region())?)
        };
        rings.push(Arc::new(ring));
    }
    for spec in &common.hierarchy {
        let s = keyspec::parse_hierarchy(spec).map_err(|e| format!("--hierarchy: {e}"))?;
        let store = keystore::open(&s.table, &s.logical_name, &s.kms_key, s.region.as_deref())?;
        let ring = HierarchicalKeyring::builder(Arc::new(store), s.ttl)
            .branch_key_id(&s.branch_key_id)
            .backend(backend)
            .build()?;
        rings.push(Arc::new(ring));
    }
    match rings.len() {
        0 => fail(
            "no key given",
            "add --wrapping-keys key=ARN, --raw-aes-key, --raw-rsa-key, --kms-rsa-key or --hierarchy",
        ),
        1 => Ok(rings.remove(0)),
        _ => {
            let generator = rings.remove(0);
            if encrypting {
                Ok(Arc::new(MultiKeyring::new(Some(generator), rings)?))
            } else {
                rings.insert(0, generator);
                Ok(Arc::new(MultiKeyring::new(None, rings)?))
            }
        }
    }
}

/// One input → output pair.
struct Job {
    input: Option<PathBuf>,
    output: Option<PathBuf>,
}

fn display(p: &Option<PathBuf>) -> String {
    p.as_ref().map_or("-".to_owned(), |p| p.display().to_string())
}

fn plan_jobs(common: &Common, default_suffix: &str) -> Result<Vec<Job>, Failure> {
    if let Some(dialect) = &common.official {
        return plan_official(common, dialect, default_suffix);
    }
    let suffix = common.suffix.as_deref().unwrap_or(default_suffix);
    let out = (common.output != "-").then(|| PathBuf::from(&common.output));
    if common.input == "-" {
        if out.as_ref().is_some_and(|o| o.is_dir()) {
            return fail("standard input needs an output file, not a directory", "give -o FILE or -o -");
        }
        return Ok(vec![Job { input: None, output: out }]);
    }
    let input = PathBuf::from(&common.input);
    if input.is_dir() {
        if !common.recursive {
            return fail(format!("{} is a directory", input.display()), "add -r/--recursive to process directories");
        }
        let Some(out_dir) = out else {
            return fail("a directory input needs an output directory", "give -o DIR");
        };
        if out_dir.exists() && !out_dir.is_dir() {
            return fail(format!("{} is not a directory", out_dir.display()), "give -o DIR");
        }
        return walk(&input, &out_dir, suffix, common.quiet());
    }
    if !input.is_file() {
        return fail(format!("{} does not exist", input.display()), "check -i/--input");
    }
    let output = match out {
        Some(o) if o.is_dir() => Some(named_after(&input, &o, suffix)),
        other => other,
    };
    Ok(vec![Job { input: Some(input), output }])
}

/// `DIR/<input's file name><suffix>`.
fn named_after(input: &Path, dir: &Path, suffix: &str) -> PathBuf {
    let mut name = input.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    dir.join(name)
}

/// The jobs of the official tool's command line: `-i` may be a glob pattern, a directory without
/// `-r` is skipped with a warning, existing outputs are replaced, skipped or asked about.
fn plan_official(common: &Common, dialect: &official::Dialect, default_suffix: &str) -> Result<Vec<Job>, Failure> {
    official::check_paths(common)?;
    let suffix = common.suffix.as_deref().unwrap_or(default_suffix);
    let out = (common.output != "-").then(|| PathBuf::from(&common.output));
    let out_dir = out.as_ref().filter(|o| o.is_dir());
    let mut jobs = Vec::new();
    if common.input == "-" {
        jobs.push(Job { input: None, output: out.clone() });
    } else {
        let sources = official::expand_sources(&common.input)?;
        if out_dir.is_none() && (sources.len() > 1 || sources.iter().any(|s| s.is_dir())) {
            return fail(
                format!(
                    "{} names several inputs or a directory, and {} is not an existing directory",
                    common.input, common.output
                ),
                "give -o an existing directory",
            );
        }
        for source in sources {
            if source.is_dir() {
                if !common.recursive {
                    dialect.warn(format_args!(
                        "skipped {}: a directory, and -r/-R/--recursive is not set",
                        source.display()
                    ));
                    continue;
                }
                jobs.extend(walk(&source, out_dir.map_or(Path::new("."), |d| d.as_path()), suffix, dialect.quiet)?);
            } else {
                let output = match out_dir {
                    Some(d) => Some(named_after(&source, d, suffix)),
                    None => out.clone(),
                };
                jobs.push(Job { input: Some(source), output });
            }
        }
    }
    let mut kept = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let (Some(i), Some(o)) = (&job.input, &job.output) {
            if i.canonicalize().ok().is_some_and(|i| o.canonicalize().ok() == Some(i)) {
                dialect.warn(format_args!("skipped {}: it is its own output", i.display()));
                continue;
            }
        }
        match &job.output {
            Some(o) if o.is_file() => match dialect.existing {
                official::Existing::Replace => {
                    dialect.warn(format_args!("replacing the existing output file {}", o.display()));
                    kept.push(job);
                }
                official::Existing::Skip => {
                    dialect.warn(format_args!("skipped the existing output file {} (--no-overwrite)", o.display()))
                }
                official::Existing::Ask if official::confirm_replace(o) => kept.push(job),
                official::Existing::Ask => dialect.warn(format_args!("kept the existing output file {}", o.display())),
            },
            _ => kept.push(job),
        }
    }
    Ok(kept)
}

/// Every regular file under `input`, each to the same relative path under `out_dir` plus
/// `suffix`.
fn walk(input: &Path, out_dir: &Path, suffix: &str, quiet: bool) -> Result<Vec<Job>, Failure> {
    let mut jobs = Vec::new();
    let mut stack = vec![input.to_owned()];
    while let Some(dir) = stack.pop() {
        // `DirEntry::file_type` does not follow symlinks: a linked directory is not entered
        // (no loops, no escape from the tree) and a linked file is not read.
        let mut entries: Vec<(PathBuf, std::fs::FileType)> = std::fs::read_dir(&dir)?
            .map(|e| e.and_then(|e| Ok((e.path(), e.file_type()?))))
            .collect::<io::Result<_>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (p, kind) in entries {
            if kind.is_symlink() {
                if !quiet {
                    eprintln!("esdk: skipped {}: a symlink (recursive mode does not follow links)", p.display());
                }
            } else if kind.is_dir() {
                stack.push(p);
            } else if !kind.is_file() {
                if !quiet {
                    eprintln!("esdk: skipped {}: not a regular file", p.display());
                }
            } else {
                let rel = p.strip_prefix(input).map_err(|e| e.to_string())?;
                let mut target = out_dir.join(rel).into_os_string();
                target.push(suffix);
                jobs.push(Job { input: Some(p), output: Some(target.into()) });
            }
        }
    }
    Ok(jobs)
}

/// Opens the input, with a progress bar on an interactive stderr.
fn open_input(job: &Job, decode: bool) -> Result<(Box<dyn Read>, Option<indicatif::ProgressBar>), Failure> {
    let (reader, len): (Box<dyn Read>, Option<u64>) = match &job.input {
        None => (Box::new(io::stdin().lock()), None),
        Some(p) => {
            let f = File::open(p).map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            let len = f.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 16, f)), len)
        }
    };
    let bar = match len {
        Some(len) if io::stderr().is_terminal() && len > (8 << 20) => {
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar.set_message(display(&job.input));
            Some(bar)
        }
        _ => None,
    };
    let reader: Box<dyn Read> = match &bar {
        Some(b) => Box::new(b.wrap_read(reader)),
        None => reader,
    };
    let reader: Box<dyn Read> = if decode {
        Box::new(base64::read::DecoderReader::new(
            WhitespaceSkipping(reader),
            &base64::engine::general_purpose::STANDARD,
        ))
    } else {
        reader
    };
    Ok((reader, bar))
}

/// Drops ASCII whitespace (line breaks in base64 files) from a reader.
struct WhitespaceSkipping<R>(R);

impl<R: Read> Read for WhitespaceSkipping<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.0.read(buf)?;
            if n == 0 {
                return Ok(0);
            }
            let mut w = 0;
            for i in 0..n {
                if !buf[i].is_ascii_whitespace() {
                    buf[w] = buf[i];
                    w += 1;
                }
            }
            if w > 0 {
                return Ok(w);
            }
        }
    }
}

/// Partial outputs (not yet renamed into place) to remove if the process is interrupted.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// On SIGINT, SIGTERM or SIGHUP: removes every partial output, then exits with 128 + the signal
/// number, as a shell reports a process the signal ended.
#[cfg(unix)]
fn remove_partials_on_interrupt() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let partials = PARTIALS.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default();
            for p in &partials {
                let _ = std::fs::remove_file(p);
            }
            eprintln!("esdk: interrupted by signal {signal}; {} partial output file(s) removed", partials.len());
            std::process::exit(128 + signal);
        }
    });
}

#[cfg(not(unix))]
fn remove_partials_on_interrupt() {}

/// A partial output's entry in [`PARTIALS`], removed when dropped (committed or abandoned).
struct Registered(PathBuf);

impl Registered {
    fn new(path: &Path) -> Self {
        if let Ok(mut p) = PARTIALS.lock() {
            p.push(path.to_owned());
        }
        Self(path.to_owned())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut p) = PARTIALS.lock() {
            p.retain(|q| q != &self.0);
        }
    }
}

/// A file written under a temporary name beside `target` and renamed into place on commit.
///
/// The temporary file gets a random name and is created with `O_EXCL` and mode 0600 (`tempfile`),
/// so a name planted in advance (a file or a symlink) is never opened, and plaintext is never
/// readable by others, not even while it is written. The rename replaces a symlink at `target`
/// instead of writing through it, and without `--overwrite` it refuses atomically to replace
/// anything (`persist_noclobber`). An abandoned or interrupted file is removed.
struct Partial {
    target: PathBuf,
    overwrite: bool,
    file: BufWriter<tempfile::NamedTempFile>,
    _registered: Registered,
}

impl Partial {
    fn create(target: &Path, overwrite: bool) -> Result<Self, Failure> {
        if !overwrite && target.symlink_metadata().is_ok() {
            return fail(format!("{} already exists", target.display()), "add --overwrite to replace it");
        }
        let dir = match target.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                parent.to_owned()
            }
            None => PathBuf::from("."),
        };
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(target.file_name().unwrap_or_default());
        prefix.push(".");
        let temp = tempfile::Builder::new()
            .prefix(&prefix)
            .suffix(".esdk-partial")
            .tempfile_in(&dir)
            .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
        let registered = Registered::new(temp.path());
        Ok(Self {
            target: target.to_owned(),
            overwrite,
            file: BufWriter::with_capacity(1 << 16, temp),
            _registered: registered,
        })
    }

    /// Flushes and syncs the file, then renames it to the target.
    fn commit(self) -> Result<(), Failure> {
        let Self { target, overwrite, file, _registered } = self;
        let temp = file.into_inner().map_err(|e| e.into_error())?;
        temp.as_file().sync_all()?;
        let persisted = if overwrite { temp.persist(&target) } else { temp.persist_noclobber(&target) };
        match persisted {
            Ok(_) => Ok(()),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Err(Failure {
                message: format!("{} appeared while the output was written; it was left as it is", target.display()),
                hint: Some("add --overwrite to replace it".into()),
            }),
            Err(e) => Err(format!("cannot move the output to {}: {}", target.display(), e.error).into()),
        }
    }
}

/// Where one job's output goes: standard output, or a [`Partial`] file; metadata lines may also
/// be appended to an existing file (`aws-encryption-cli`'s `--metadata-output`).
enum Sink {
    Stdout(BufWriter<io::StdoutLock<'static>>),
    File(Partial),
    Appended(File),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(w) => w.write(buf),
            Self::File(p) => p.file.write(buf),
            Self::Appended(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(w) => w.flush(),
            Self::File(p) => p.file.flush(),
            Self::Appended(f) => f.flush(),
        }
    }
}

/// Output written to a temporary file that becomes the real one only on success.
struct Output {
    writer: Sink,
}

impl Output {
    fn create(target: &Option<PathBuf>, overwrite: bool) -> Result<Self, Failure> {
        let writer = match target {
            None => Sink::Stdout(BufWriter::new(io::stdout().lock())),
            Some(target) => Sink::File(Partial::create(target, overwrite)?),
        };
        Ok(Self { writer })
    }

    fn commit(self) -> Result<(), Failure> {
        match self.writer {
            Sink::Stdout(mut w) => Ok(w.flush()?),
            Sink::File(partial) => partial.commit(),
            Sink::Appended(mut f) => Ok(f.flush()?),
        }
    }
}

/// Where `--metadata-output` lines go. A metadata file is a [`Partial`] too: renamed into place
/// when the run ends (also after a failed job, so it records what was done), removed if the run
/// is interrupted.
///
/// On `aws-encryption-cli` command lines the file is appended to, as the official tool does
/// (created 0600 if missing, a symlink refused), unless `--overwrite-metadata`; the lines are
/// formatted as Python's `json.dumps` writes them.
struct Metadata {
    sink: Option<Sink>,
    /// Where the lines go, opened at the first line: a run that processes nothing leaves an
    /// existing metadata file as it was (and creates none), as the official tool does.
    pending: Option<(PathBuf, MetadataOpen)>,
    python: bool,
}

/// How a metadata file is opened.
#[derive(Clone, Copy)]
enum MetadataOpen {
    Append,
    Replace { overwrite: bool },
}

impl Metadata {
    fn open(common: &Common) -> Result<Self, Failure> {
        let (sink, pending) = match common.metadata_output.as_deref() {
            None => (None, None),
            Some("-") => (Some(Sink::Stdout(BufWriter::new(io::stdout().lock()))), None),
            Some(path) => {
                let how = match &common.official {
                    Some(d) if !d.overwrite_metadata => MetadataOpen::Append,
                    Some(_) => MetadataOpen::Replace { overwrite: true },
                    None => MetadataOpen::Replace { overwrite: common.overwrite },
                };
                // esdk's own subcommands refuse an existing file up front, before any work.
                if let (None, MetadataOpen::Replace { overwrite: false }) = (&common.official, how) {
                    if Path::new(path).symlink_metadata().is_ok() {
                        return fail(format!("{path} already exists"), "add --overwrite to replace it");
                    }
                }
                (None, Some((PathBuf::from(path), how)))
            }
        };
        Ok(Self { sink, pending, python: common.official.is_some() })
    }

    fn line(&mut self, v: Value) -> Result<(), Failure> {
        if let Some((path, how)) = self.pending.take() {
            self.sink = Some(match how {
                MetadataOpen::Append => Sink::Appended(open_append(&path)?),
                MetadataOpen::Replace { overwrite } => Sink::File(Partial::create(&path, overwrite)?),
            });
        }
        if let Some(w) = &mut self.sink {
            if self.python {
                writeln!(w, "{}", official::python_json(&v))?;
            } else {
                writeln!(w, "{v}")?;
            }
            w.flush()?;
        }
        Ok(())
    }
}

/// Opens `path` for appending: created with mode 0600 if missing, never through a symlink.
fn open_append(path: &Path) -> Result<File, Failure> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    // A symlink to something that is not a regular file (`/dev/stderr`, a FIFO) is written to;
    // a symlink to a file is not followed.
    let to_device = path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
        if !to_device {
            options.custom_flags(libc::O_NOFOLLOW);
        }
    }
    options.open(path).map_err(|e| {
        let why = if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
            "it is a symlink, which is not followed".to_owned()
        } else {
            e.to_string()
        };
        Failure {
            message: format!("cannot open the metadata output {} for appending: {why}", path.display()),
            hint: Some("give a regular file (or a new name) to --metadata-output".into()),
        }
    })
}

impl Drop for Metadata {
    fn drop(&mut self) {
        if let Some(Sink::File(partial)) = self.sink.take() {
            if let Err(f) = partial.commit() {
                eprintln!("esdk: error: metadata output: {}", f.message);
            }
        }
    }
}

fn header_json(h: &MessageHeader) -> Value {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    json!({
        "version": h.version().byte(),
        "algorithm_suite": format!("0x{:04X}", h.suite().id()),
        "message_id": hex(h.message_id()),
        "encryption_context": h.encryption_context().iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "encrypted_data_keys": h.encrypted_data_keys().iter().map(|e| json!({
            "provider_id": e.provider_id,
            "provider_info": e.provider_info_lossy(),
            "ciphertext_length": e.ciphertext.len(),
        })).collect::<Vec<_>>(),
        "content_type": match h.content_type() { esdk::ContentType::Framed => "framed", esdk::ContentType::NonFramed => "non-framed" },
        "frame_length": h.frame_length(),
    })
}

/// The materials manager: a default CMM over the keyring, cached if `--caching` was given.
fn build_cmm(common: &Common, encrypting: bool) -> Result<Arc<dyn MaterialsManager>, Failure> {
    let backend = backend_of(common)?;
    let default: Arc<dyn MaterialsManager> =
        Arc::new(DefaultCmm::from_arc(build_keyring(common, encrypting)?).with_backend(backend));
    if common.caching.is_empty() {
        return Ok(default);
    }
    let spec = keyspec::parse_caching(&common.caching).map_err(|e| format!("--caching: {e}"))?;
    let mut cmm =
        CachingCmm::new(default, Arc::new(LocalCache::new(spec.capacity)?), spec.max_age)?.with_backend(backend);
    if let Some(m) = spec.max_messages {
        cmm = cmm.with_max_messages(m)?;
    }
    if let Some(b) = spec.max_bytes {
        cmm = cmm.with_max_bytes(b);
    }
    Ok(Arc::new(cmm))
}

fn check_stdout_conflict(common: &Common) -> Result<(), Failure> {
    if common.output == "-" && common.metadata_output.as_deref() == Some("-") {
        return fail("--metadata-output - and -o - would mix on standard output", "write metadata to a file");
    }
    Ok(())
}

fn encrypt(args: EncryptArgs) -> Result<(), Failure> {
    let common = &args.common;
    check_stdout_conflict(common)?;
    // aws-encryption-cli base64-decodes the input of encrypt too; esdk's own subcommand refuses.
    if common.decode && common.official.is_none() {
        return fail("--decode applies to decrypt and inspect", "remove --decode");
    }
    let suite = args.algorithm.as_deref().map(parse_suite).transpose()?;
    let client = build_client(common, suite, args.frame_length)?;
    let ec = keyspec::parse_context(&common.encryption_context).map_err(|e| format!("-c: {e}"))?;
    let cmm = build_cmm(common, true)?;
    let jobs = plan_jobs(common, ".encrypted")?;
    let mut metadata = Metadata::open(common)?;
    for job in &jobs {
        let (mut input, bar) = open_input(job, common.decode)?;
        let mut out = Output::create(&job.output, common.overwrite)?;
        let header = {
            let sink: Box<dyn Write> = if common.encode {
                Box::new(base64::write::EncoderWriter::new(&mut out.writer, &base64::engine::general_purpose::STANDARD))
            } else {
                Box::new(&mut out.writer)
            };
            // A known file size lets a caching CMM reuse materials across files.
            let size = job.input.as_ref().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len());
            let mut w = match size {
                Some(len) => client.encrypting_writer_sized_blocking(&*cmm, &ec, len, sink)?,
                None => client.encrypting_writer_blocking(&*cmm, &ec, sink)?,
            };
            io::copy(&mut input, &mut w).map_err(|e| with_path(e, job))?;
            let header = w.header().clone();
            let mut sink = w.finish()?;
            sink.flush()?;
            header
        };
        out.commit()?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        metadata.line(match &common.official {
            Some(_) => json!({
                "header": official::header_json(&header),
                "input": official::path_json(&job.input, "<stdin>"),
                "mode": "encrypt",
                "output": official::path_json(&job.output, "<stdout>"),
            }),
            None => json!({"mode": "encrypt", "input": display(&job.input), "output": display(&job.output), "header": header_json(&header)}),
        })?;
    }
    Ok(())
}

fn with_path(e: io::Error, job: &Job) -> Failure {
    let err = Error::from(e);
    let hint = hint_for(&err);
    Failure { message: format!("{}: {err}", display(&job.input)), hint }
}

fn decrypt(args: DecryptArgs) -> Result<(), Failure> {
    let common = &args.common;
    check_stdout_conflict(common)?;
    let client = build_client(common, None, None)?;
    let pairs = keyspec::parse_context(&common.encryption_context).map_err(|e| format!("-c: {e}"))?;
    // aws-encryption-cli checks the pairs (and bare keys) against the header's context itself;
    // esdk's own subcommand hands them to the library as required (or reproduced) pairs.
    let (required, checked) = match common.official {
        Some(_) => (None, pairs),
        None => ((!pairs.is_empty()).then_some(pairs), EncryptionContext::new()),
    };
    let cmm = build_cmm(common, false)?;
    let jobs = plan_jobs(common, ".decrypted")?;
    let mut metadata = Metadata::open(common)?;
    let mode = if args.decrypt_unsigned { SignedMessages::Refuse } else { SignedMessages::VerifyBeforeRelease };
    let mut failures = 0usize;
    for job in &jobs {
        let want = Wanted { required: required.as_ref(), checked: &checked };
        match decrypt_one(&client, &*cmm, job, want, mode, &args, &mut metadata) {
            Ok(()) => {}
            Err(f) if jobs.len() == 1 => return Err(f),
            Err(f) => {
                failures += 1;
                eprintln!("esdk: error: {}: {}", display(&job.input), f.message);
                if let Some(h) = f.hint {
                    eprintln!("esdk: hint: {h}");
                }
            }
        }
    }
    if failures > 0 {
        return Err(
            format!("{failures} of {} file(s) failed to decrypt; no output was written for them", jobs.len()).into()
        );
    }
    Ok(())
}

/// What a decrypt requires of a message's encryption context.
struct Wanted<'a> {
    /// Pairs the library checks (and supplies, for pairs a required-context CMM kept out of the
    /// message): `esdk decrypt -c`.
    required: Option<&'a EncryptionContext>,
    /// Pairs the header must carry, checked here: `aws-encryption-cli -d -c` (its bare keys are in
    /// the dialect).
    checked: &'a EncryptionContext,
}

/// Keys and pairs an `aws-encryption-cli` decrypt asked for that a header's context lacks.
type Missing = (Vec<String>, Vec<(String, String)>);

/// The pairs and keys of an `aws-encryption-cli` decrypt that the header's context lacks: `None`
/// when nothing is missing, else the metadata record's fields saying what is.
fn missing_context(common: &Common, want: &Wanted, header: &MessageHeader) -> Option<Missing> {
    let dialect = common.official.as_ref()?;
    let ec = header.encryption_context();
    let keys: Vec<String> = dialect.required_keys.iter().filter(|k| ec.get(k).is_none()).cloned().collect();
    let pairs: Vec<(String, String)> =
        want.checked.iter().filter(|(k, v)| ec.get(k) != Some(*v)).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    (!keys.is_empty() || !pairs.is_empty()).then_some((keys, pairs))
}

/// Refuses the message (after recording why in the metadata, as the official tool does) if the
/// header's context lacks what `aws-encryption-cli -c` asked for.
fn check_context(
    common: &Common,
    want: &Wanted,
    header: &MessageHeader,
    job: &Job,
    metadata: &mut Metadata,
) -> Result<(), Failure> {
    let Some((keys, pairs)) = missing_context(common, want, header) else { return Ok(()) };
    metadata.line(json!({
        "header": official::header_json(header),
        "header_auth": official::header_auth_json(header),
        "input": official::path_json(&job.input, "<stdin>"),
        "missing_encryption_context_keys": keys,
        "missing_encryption_context_pairs": pairs,
        "mode": common.official.as_ref().map_or("decrypt", |d| d.mode),
        "output": official::path_json(&job.output, "<stdout>"),
        "reason": "Missing encryption context key or value",
        "skipped": true,
    }))?;
    let mut missing: Vec<String> = keys.iter().map(|k| format!("key {k:?}")).collect();
    missing.extend(pairs.iter().map(|(k, v)| format!("{k:?}={v:?}")));
    Err(Failure {
        message: format!(
            "{}: the message's encryption context lacks {}; nothing was written",
            display(&job.input),
            missing.join(", ")
        ),
        hint: Some("check the -c/--encryption-context pairs (aws-encryption-cli exits 0 here; esdk does not)".into()),
    })
}

fn decrypt_one(
    client: &Client,
    cmm: &dyn MaterialsManager,
    job: &Job,
    want: Wanted,
    mode: SignedMessages,
    args: &DecryptArgs,
    metadata: &mut Metadata,
) -> Result<(), Failure> {
    let common = &args.common;
    let required = want.required;
    let (input, bar) = open_input(job, common.decode)?;
    let mut out = Output::create(&job.output, common.overwrite)?;
    let (header, ec, unwrapped) = if args.buffer {
        let mut message = Vec::new();
        let mut input = input;
        input.read_to_end(&mut message).map_err(|e| with_path(e, job))?;
        let d = if args.decrypt_unsigned {
            client.decrypt_unsigned_only_blocking(cmm, &message, required)
        } else {
            client.decrypt_blocking(cmm, &message, required)
        }?;
        check_context(common, &want, &d.header, job, metadata)?;
        write_maybe_encoded(&mut out.writer, &d.plaintext, common.encode)?;
        (d.header, d.encryption_context, d.unwrapped_edk)
    } else {
        // A file output is a private temporary file renamed into place only after the whole
        // message (signature included) verified: it can hold the plaintext of authenticated
        // frames before the signature is checked, at any size, in bounded memory. A failure
        // removes it. Standard output keeps the bounded hold (its bytes cannot be taken back).
        let mode = match (mode, &job.output) {
            (SignedMessages::VerifyBeforeRelease, Some(_)) => SignedMessages::DangerReleaseFramesBeforeSignature,
            (mode, _) => mode,
        };
        let mut reader = client.decrypting_reader_blocking(cmm, input, required, mode)?;
        check_context(common, &want, reader.header(), job, metadata)?;
        {
            let mut sink: Box<dyn Write> = if common.encode {
                Box::new(base64::write::EncoderWriter::new(&mut out.writer, &base64::engine::general_purpose::STANDARD))
            } else {
                Box::new(&mut out.writer)
            };
            io::copy(&mut reader, &mut sink).map_err(|e| with_path(e, job))?;
            sink.flush()?;
        }
        (reader.header().clone(), reader.encryption_context().clone(), reader.unwrapped_edk())
    };
    out.commit()?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let key = unwrapped
        .and_then(|i| header.encrypted_data_keys().get(i))
        .map(|e| json!({"provider_id": e.provider_id, "provider_info": e.provider_info_lossy()}));
    let ec: serde_json::Map<String, Value> = ec.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
    metadata.line(match &common.official {
        Some(d) => json!({
            "header": official::header_json(&header),
            "header_auth": official::header_auth_json(&header),
            "input": official::path_json(&job.input, "<stdin>"),
            "mode": d.mode,
            "output": official::path_json(&job.output, "<stdout>"),
        }),
        None => json!({
            "mode": "decrypt",
            "input": display(&job.input),
            "output": display(&job.output),
            "header": header_json(&header),
            "encryption_context": ec,
            "decrypted_with": key,
        }),
    })
}

fn write_maybe_encoded(w: &mut dyn Write, data: &[u8], encode: bool) -> io::Result<()> {
    if encode {
        let mut enc = base64::write::EncoderWriter::new(w, &base64::engine::general_purpose::STANDARD);
        enc.write_all(data)?;
        enc.finish()?;
        Ok(())
    } else {
        w.write_all(data)
    }
}

fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let job = Job { input: (args.input != "-").then(|| PathBuf::from(&args.input)), output: None };
    let (mut input, _) = open_input(&job, args.decode)?;
    let limits = HeaderLimits::default();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match MessageHeader::parse(&buf, &limits) {
            Ok((header, len)) => {
                let mut v = header_json(&header);
                v["header_length"] = json!(len);
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::Truncated => {
                let n = input.read(&mut chunk).map_err(|e| with_path(e, &job))?;
                if n == 0 {
                    return Err(Error::Truncated { what: "header" }.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
