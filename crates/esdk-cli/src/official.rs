//! The command lines of the official `aws-encryption-cli` (PyPI `aws-encryption-sdk-cli` 4.x),
//! accepted unchanged beside `esdk`'s own subcommands:
//! `esdk -e|-d|--decrypt-unsigned -i IN -o OUT -w key=ARN… --metadata-output FILE|-S …`.
//!
//! They are parsed here into the options `esdk encrypt` / `esdk decrypt` run with, plus the
//! official tool's behaviours that differ from `esdk`'s own: existing outputs are replaced (with a
//! warning) unless `--no-overwrite` or `--interactive`, metadata files are appended to, `-i` is a
//! glob pattern, a directory without `-r` is skipped with a warning, metadata lines carry the
//! official keys and formatting. Where the official tool is unsafe, this is not: an encryption
//! context mismatch exits non-zero, outputs are private (0600) temporary files renamed into
//! place, symlinks are not followed in recursive mode. `docs/aws-encryption-cli.md` lists every
//! difference.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::{ArgAction, ArgGroup, CommandFactory, FromArgMatches, Parser};
use esdk::suite::MessageFormatVersion;
use esdk::{ContentType, MessageHeader};
use serde_json::{json, Value};

use super::{Common, DecryptArgs, EncryptArgs, Failure, PolicyArg};

/// The tokens that name an `aws-encryption-cli` action.
const ACTIONS: [&str; 5] = ["-e", "--encrypt", "-d", "--decrypt", "--decrypt-unsigned"];

/// `esdk`'s own subcommands: a command line starting with one of them is never the official one.
const SUBCOMMANDS: [&str; 5] = ["encrypt", "decrypt", "inspect", "kinesis", "help"];

/// The official tool's long options (argparse takes any unambiguous prefix of one).
const LONG_OPTIONS: [&str; 27] = [
    "--version",
    "--encrypt",
    "--decrypt",
    "--decrypt-unsigned",
    "--suppress-metadata",
    "--metadata-output",
    "--overwrite-metadata",
    "--wrapping-keys",
    "--commitment-policy",
    "--caching",
    "--buffer",
    "--input",
    "--output",
    "--encode",
    "--decode",
    "--encryption-context",
    "--algorithm",
    "--frame-length",
    "--max-length",
    "--max-encrypted-data-keys",
    "--suffix",
    "--interactive",
    "--no-overwrite",
    "--recursive",
    "--quiet",
    "--help",
    "--required-encryption-context-keys",
];

/// The official tool's short flags that take no value (they may be clustered: `-qe`).
const SHORT_FLAGS: &str = "edSbrRvq";

/// Whether one argument names an action: `-e`, `-d`, the long names, an unambiguous prefix of one
/// (`--decrypt-u`; `--encr` and `--decr` are ambiguous, for argparse too), or a cluster of
/// value-less short flags with `e` or `d` in it (`-qe`).
fn names_action(arg: &str) -> bool {
    if ACTIONS.contains(&arg) {
        return true;
    }
    if let Some(long) = arg.strip_prefix("--").filter(|l| !l.is_empty() && !l.contains('=')) {
        let matches: Vec<&str> = LONG_OPTIONS.iter().copied().filter(|o| o[2..].starts_with(long)).collect();
        return matches.len() == 1 && ACTIONS.contains(&matches[0]);
    }
    match arg.strip_prefix('-') {
        Some(cluster) if cluster.len() > 1 && !cluster.starts_with('-') => {
            cluster.chars().all(|c| SHORT_FLAGS.contains(c)) && cluster.contains(['e', 'd'])
        }
        _ => false,
    }
}

/// Whether `args` (the program name first) is an `aws-encryption-cli` command line.
pub(crate) fn is_official_command_line(args: &[OsString]) -> bool {
    let rest = args.get(1..).unwrap_or_default();
    if rest.first().and_then(|a| a.to_str()).is_some_and(|a| SUBCOMMANDS.contains(&a)) {
        return false;
    }
    rest.iter().filter_map(|a| a.to_str()).take_while(|a| *a != "--").any(|a| names_action(a) || a.starts_with('@'))
}

/// What to do when an output file exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Replace it, with a warning (the official default).
    Replace,
    /// Leave it and skip the input, with a warning (`--no-overwrite`).
    Skip,
    /// Ask on standard input (`--interactive`).
    Ask,
}

/// The official tool's settings that `esdk`'s own subcommands do not have.
#[derive(Clone, Debug)]
pub(crate) struct Dialect {
    /// The action's name as the metadata records it: `encrypt`, `decrypt` or `decrypt-unsigned`.
    pub mode: &'static str,
    /// `-c KEY` without a value on decrypt: keys the message's context must have.
    pub required_keys: Vec<String>,
    pub existing: Existing,
    /// `-q`: no warnings.
    pub quiet: bool,
    /// `--overwrite-metadata`: replace the metadata file instead of appending to it.
    pub overwrite_metadata: bool,
    /// `--max-length`: the largest frame (framed) or body (non-framed) decrypt accepts.
    pub max_length: Option<u64>,
}

impl Dialect {
    pub(crate) fn warn(&self, message: impl std::fmt::Display) {
        if !self.quiet {
            eprintln!("esdk: warning: {message}");
        }
    }
}

/// `aws-encryption-cli`'s options (its `--help` lists them; the same names, forms and rules).
#[derive(Parser, Debug)]
#[command(
    name = "esdk",
    about = "aws-encryption-cli command lines: esdk -e|-d|--decrypt-unsigned -i IN -o OUT -w key=ARN --metadata-output FILE|-S",
    infer_long_args = true,
    disable_version_flag = true
)]
#[command(group(ArgGroup::new("action").required(true).args(["encrypt", "decrypt", "decrypt_unsigned"])))]
#[command(group(ArgGroup::new("metadata").required(true).args(["suppress_metadata", "metadata_output"])))]
struct OfficialCli {
    /// Encrypt data.
    #[arg(short = 'e', long, overrides_with = "encrypt")]
    encrypt: bool,
    /// Decrypt data.
    #[arg(short = 'd', long, overrides_with = "decrypt")]
    decrypt: bool,
    /// Decrypt data and refuse signed messages.
    #[arg(long = "decrypt-unsigned", overrides_with = "decrypt_unsigned")]
    decrypt_unsigned: bool,
    /// Suppress metadata output.
    #[arg(short = 'S', long = "suppress-metadata", overrides_with = "suppress_metadata")]
    suppress_metadata: bool,
    /// File to which to append metadata records (- for standard output).
    #[arg(long = "metadata-output", value_name = "FILE")]
    metadata_output: Option<String>,
    /// Replace the metadata file instead of appending to it.
    #[arg(long = "overwrite-metadata", overrides_with = "overwrite_metadata")]
    overwrite_metadata: bool,
    /// A wrapping key provider and its keys: [provider=aws-kms] key=ARN… [region=R] [profile=P],
    /// or discovery=true [discovery-account=ID… discovery-partition=P] (decrypt). Repeatable.
    #[arg(short = 'w', long = "wrapping-keys", num_args = 1.., action = ArgAction::Append, required = true, value_name = "ATTR=VALUE")]
    wrapping_keys: Vec<String>,
    /// Commitment policy.
    #[arg(long = "commitment-policy", value_enum, value_name = "POLICY")]
    commitment_policy: Option<PolicyArg>,
    /// Caching CMM: capacity=N max_age=SECONDS [max_messages_encrypted=N] [max_bytes_encrypted=N].
    #[arg(long, num_args = 1.., value_name = "ATTR=VALUE")]
    caching: Vec<String>,
    /// Decrypt a whole message in memory before writing any of it.
    #[arg(short = 'b', long, overrides_with = "buffer")]
    buffer: bool,
    /// Input file, directory or glob pattern, or - for standard input.
    #[arg(short = 'i', long, value_name = "PATH")]
    input: String,
    /// Output file or directory, or - for standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    output: String,
    /// Base64-encode the output.
    #[arg(long, overrides_with = "encode")]
    encode: bool,
    /// Base64-decode the input.
    #[arg(long, overrides_with = "decode")]
    decode: bool,
    /// Encrypt: KEY=VALUE pairs. Decrypt: KEY=VALUE pairs and KEYs the message must carry.
    #[arg(short = 'c', long = "encryption-context", num_args = 1.., value_name = "KEY[=VALUE]")]
    encryption_context: Vec<String>,
    /// Algorithm suite name (encrypt), e.g. AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384.
    #[arg(long, value_name = "NAME")]
    algorithm: Option<String>,
    /// Frame length in bytes (encrypt).
    #[arg(long = "frame-length", value_name = "BYTES")]
    frame_length: Option<u32>,
    /// Largest frame (framed messages) or body (non-framed) accepted (decrypt).
    #[arg(long = "max-length", value_name = "BYTES")]
    max_length: Option<u64>,
    /// Most encrypted data keys a message may carry.
    #[arg(long = "max-encrypted-data-keys", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    max_encrypted_data_keys: Option<u16>,
    /// Suffix of output files named after their input (empty when given without a value).
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "SUFFIX")]
    suffix: Option<String>,
    /// Ask before replacing an existing output file.
    #[arg(long, overrides_with = "interactive")]
    interactive: bool,
    /// Never replace an existing output file (skip the input).
    #[arg(long = "no-overwrite", overrides_with = "no_overwrite")]
    no_overwrite: bool,
    /// Process directories.
    #[arg(short = 'r', short_alias = 'R', long, overrides_with = "recursive")]
    recursive: bool,
    /// Log more (repeatable).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbosity: u8,
    /// No warnings.
    #[arg(short = 'q', long, overrides_with = "quiet")]
    quiet: bool,
    /// Crypto backend (an esdk extension: aws-lc-rs or rustcrypto, if compiled in).
    #[arg(long, value_name = "NAME")]
    backend: Option<String>,
}

/// A parsed official command line.
pub(crate) enum Action {
    Encrypt(EncryptArgs),
    Decrypt(DecryptArgs),
}

/// Parses an official command line (`@FILE` arguments expanded first). Usage errors exit 2, as
/// they do for the official tool.
pub(crate) fn parse(args: Vec<OsString>) -> Result<(Action, u8), Failure> {
    let args = expand_argument_files(args, 0)?;
    let matches = OfficialCli::command().try_get_matches_from(args).unwrap_or_else(|e| e.exit());
    let cli = OfficialCli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let groups: Vec<Vec<String>> = matches
        .get_occurrences::<String>("wrapping_keys")
        .map(|occ| occ.map(|o| o.cloned().collect()).collect())
        .unwrap_or_default();
    let mode = match (cli.encrypt, cli.decrypt) {
        (true, _) => "encrypt",
        (_, true) => "decrypt",
        _ => "decrypt-unsigned",
    };
    check_arguments(&cli, &matches, &groups, mode == "encrypt");
    let (mut pairs, required_keys): (Vec<String>, Vec<String>) =
        cli.encryption_context.iter().cloned().partition(|c| mode == "encrypt" || c.contains('='));
    // A key given twice keeps its first value (`_collapse_config`).
    let mut seen = std::collections::HashSet::new();
    pairs.retain(|p| seen.insert(p.split_once('=').map_or(p.clone(), |(k, _)| k.to_owned())));
    let context = pairs;
    // Both given: --no-overwrite wins, as the official tool checks it first.
    let existing = match (cli.no_overwrite, cli.interactive) {
        (true, _) => Existing::Skip,
        (_, true) => Existing::Ask,
        _ => Existing::Replace,
    };
    let dialect = Dialect {
        mode,
        required_keys,
        existing,
        quiet: cli.quiet,
        overwrite_metadata: cli.overwrite_metadata,
        max_length: cli.max_length,
    };
    let common = Common {
        input: cli.input,
        output: cli.output,
        recursive: cli.recursive,
        suffix: cli.suffix,
        encryption_context: context,
        wrapping_keys: cli.wrapping_keys,
        wrapping_key_groups: groups,
        raw_aes_key: Vec::new(),
        raw_rsa_key: Vec::new(),
        kms_rsa_key: Vec::new(),
        hierarchy: Vec::new(),
        commitment_policy: cli.commitment_policy,
        max_encrypted_data_keys: cli.max_encrypted_data_keys,
        encode: cli.encode,
        decode: cli.decode,
        metadata_output: if cli.suppress_metadata { None } else { cli.metadata_output },
        suppress_metadata: cli.suppress_metadata,
        caching: cli.caching,
        overwrite: existing != Existing::Skip,
        backend: cli.backend,
        official: Some(dialect),
    };
    let action = if mode == "encrypt" {
        if cli.frame_length == Some(0) {
            return Err(Failure {
                message: "--frame-length 0 asks for a non-framed message, which esdk does not write (the \
                          specification allows frame lengths of 1 to 4294967295 for encryption)"
                    .into(),
                hint: Some(
                    "leave --frame-length out (4096) or give a positive length; esdk decrypts non-framed messages"
                        .into(),
                ),
            });
        }
        Action::Encrypt(EncryptArgs { common, algorithm: cli.algorithm, frame_length: cli.frame_length })
    } else {
        Action::Decrypt(DecryptArgs { common, decrypt_unsigned: mode == "decrypt-unsigned", buffer: cli.buffer })
    };
    Ok((action, cli.verbosity))
}

/// The argument checks the official tool makes while parsing (a failure is a usage error: the
/// message, the usage line, exit status 2).
fn check_arguments(cli: &OfficialCli, matches: &clap::ArgMatches, groups: &[Vec<String>], encrypting: bool) {
    let usage = |message: String| -> ! {
        OfficialCli::command().error(clap::error::ErrorKind::ValueValidation, message).exit()
    };
    // `UniqueStoreAction`: these may be given once (their values may be several).
    for (id, name) in [("encryption_context", "-c/--encryption-context"), ("caching", "--caching")] {
        if matches.get_occurrences::<String>(id).is_some_and(|o| o.count() > 1) {
            usage(format!("{name} may not be specified more than once"))
        }
    }
    for group in groups {
        if let Err(e) = check_wrapping_keys(group, encrypting) {
            usage(format!("--wrapping-keys {}: {e}", group.join(" ")))
        }
    }
    if !cli.caching.is_empty() {
        if let Err(e) = crate::keyspec::parse_caching(&cli.caching) {
            usage(format!("--caching: {e}"))
        }
    }
    for pair in cli.encryption_context.iter().filter(|c| encrypting || c.contains('=')) {
        if !pair.split_once('=').is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()) {
            usage(format!("--encryption-context {pair}: must be key=value, both non-empty"))
        }
    }
    if let Some(a) = cli.algorithm.as_deref().filter(|a| !super::SUITE_NAMES.iter().any(|(n, _)| n == a)) {
        let names: Vec<&str> = super::SUITE_NAMES.iter().map(|(n, _)| *n).collect();
        usage(format!("--algorithm {a}: not one of {}", names.join(", ")))
    }
}

/// The official parser's own rules for one `--wrapping-keys` group (its `ParameterParseError`s,
/// usage errors). What it leaves to the key provider (unknown attributes, a second `region=` or
/// `profile=`, a provider that is not AWS KMS) fails later, with exit status 1, as it does there.
fn check_wrapping_keys(group: &[String], encrypting: bool) -> Result<(), String> {
    let mut attrs: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
    for attr in group {
        match attr.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => attrs.entry(k).or_default().push(v),
            _ => return Err(format!("{attr:?} is not key=value")),
        }
    }
    let has = |k: &str| attrs.contains_key(k);
    let providers = attrs.get("provider").map_or(1, Vec::len);
    if providers != 1 {
        return Err(format!("exactly one provider= per group, {providers} given"));
    }
    let kms = attrs.get("provider").is_none_or(|p| crate::keyspec::KMS_PROVIDERS.contains(&p[0]));
    let discovery_attrs = has("discovery") || has("discovery-account") || has("discovery-partition");
    if !kms {
        return match (discovery_attrs, has("key")) {
            (true, _) => Err("discovery attributes apply to AWS KMS keys only".into()),
            (_, false) => Err("at least one key= per provider".into()),
            _ => Ok(()),
        };
    }
    if encrypting && discovery_attrs {
        return Err("discovery attributes apply to decryption only".into());
    }
    if encrypting && !has("key") {
        return Err("at least one key= to encrypt with".into());
    }
    let discovery = match attrs.get("discovery") {
        None if has("discovery-account") || has("discovery-partition") => {
            return Err("discovery-account and discovery-partition need discovery=true".into())
        }
        None => false,
        Some(v) => crate::keyspec::pseudo_bool(v[0]).ok_or_else(|| format!("discovery={}: not true or false", v[0]))?,
    };
    let (accounts, partitions) = (attrs.get("discovery-account"), attrs.get("discovery-partition"));
    if !discovery && (accounts.is_some() || partitions.is_some()) {
        return Err("discovery-account and discovery-partition need discovery=true".into());
    }
    if accounts.is_some() != partitions.is_some() {
        return Err("discovery-account and discovery-partition go together".into());
    }
    if partitions.is_some_and(|p| p.len() != 1) {
        return Err("discovery-partition may be given once".into());
    }
    match (discovery, has("key")) {
        (true, true) => Err("with discovery=true, no key= may be given".into()),
        (false, false) => Err("with discovery=false, at least one key= must be given".into()),
        _ => Ok(()),
    }
}

/// Expands `@FILE` arguments as `aws-encryption-cli` does (argparse's `fromfile_prefix_chars`):
/// each line of FILE is split like a POSIX shell would, `#` starts a comment, and `~` and `$VAR`
/// are expanded in each argument. Files may name further files, up to a depth of 8.
fn expand_argument_files(args: Vec<OsString>, depth: usize) -> Result<Vec<OsString>, Failure> {
    let mut out = Vec::with_capacity(args.len());
    for (i, arg) in args.into_iter().enumerate() {
        let Some(path) = arg.to_str().and_then(|a| a.strip_prefix('@')).filter(|_| i > 0 || depth > 0) else {
            out.push(arg);
            continue;
        };
        if depth >= 8 {
            return Err(format!("@{path}: argument files nested more than 8 deep").into());
        }
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            // argparse reports an unreadable argument file as a usage error.
            OfficialCli::command()
                .error(clap::error::ErrorKind::Io, format!("cannot read the argument file {path}: {e}"))
                .exit()
        });
        let mut expanded = Vec::new();
        for line in text.lines() {
            let words = split_line(line).map_err(|e| format!("{path}: {e} in the line {:?}", line.trim()))?;
            expanded.extend(words.iter().map(|w| OsString::from(expand_variables(&expand_home(w.trim())))));
        }
        out.extend(expand_argument_files(expanded, depth + 1)?);
    }
    Ok(out)
}

/// Splits one line of an argument file as Python's `shlex` does in the official tool (POSIX mode,
/// split on whitespace only, `#` starts a comment anywhere outside quotes, `'` and `"` quote, `\`
/// escapes, also inside either quote, where it stays unless it escapes the quote or itself).
fn split_line(line: &str) -> Result<Vec<String>, &'static str> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Between,
        Word,
        Quoted(char),
        Escaped(Option<char>),
    }
    let (mut words, mut token, mut quoted, mut state) = (Vec::new(), String::new(), false, State::Between);
    let mut chars = line.chars();
    loop {
        let c = chars.next();
        match (state, c) {
            (State::Quoted(_), None) => return Err("no closing quotation"),
            (State::Escaped(_), None) => return Err("no escaped character"),
            (_, None) => break,
            (State::Quoted(q), Some(c)) if c == q => state = State::Word,
            (State::Quoted(q), Some('\\')) => state = State::Escaped(Some(q)),
            (State::Quoted(_), Some(c)) => token.push(c),
            (State::Escaped(inside), Some(c)) => {
                if let Some(q) = inside {
                    if c != '\\' && c != q {
                        token.push('\\');
                    }
                }
                token.push(c);
                state = inside.map_or(State::Word, State::Quoted);
            }
            (_, Some(c)) if c.is_whitespace() => {
                if state == State::Word && (!token.is_empty() || quoted) {
                    words.push(std::mem::take(&mut token));
                    quoted = false;
                }
                state = State::Between;
            }
            (_, Some('#')) => break,
            (_, Some(q @ ('\'' | '"'))) => {
                quoted = true;
                state = State::Quoted(q);
            }
            (_, Some('\\')) => state = State::Escaped(None),
            (_, Some(c)) => {
                token.push(c);
                state = State::Word;
            }
        }
    }
    if !token.is_empty() || quoted {
        words.push(token);
    }
    Ok(words)
}

/// `~` or `~/…` at the start: the home directory, as Python's `os.path.expanduser`.
fn expand_home(word: &str) -> String {
    match (word.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => format!("{home}{rest}"),
        _ => word.to_owned(),
    }
}

/// `$NAME` and `${NAME}` replaced by the variable's value; unset variables are left as written,
/// as Python's `os.path.expandvars` leaves them.
fn expand_variables(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match std::env::var(name).ok().filter(|_| !name.is_empty()) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[at..at + 1 + consumed]),
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    out
}

/// The checks the official tool makes before it touches anything (same refusals, same order).
pub(crate) fn check_paths(common: &Common) -> Result<(), Failure> {
    let (input, output) = (common.input.as_str(), common.output.as_str());
    let out = Path::new(output);
    if output != "-" && !out.is_dir() {
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            return Err(Failure {
                message: format!("the directory of the output file {output} does not exist"),
                hint: Some("create it first: an output that is a file needs an existing parent directory".into()),
            });
        }
    }
    if let Some(meta) = common.metadata_output.as_deref() {
        if meta.is_empty() {
            return Err("the metadata output file name is empty".to_owned().into());
        }
        if meta == "-" {
            if output == "-" {
                return Err(Failure {
                    message: "--metadata-output - and -o - would mix on standard output".into(),
                    hint: Some("write the metadata to a file, or use -S".into()),
                });
            }
        } else {
            let parent = Path::new(meta).parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            if !parent.is_dir() {
                return Err(format!("the directory of the metadata output {meta} does not exist").into());
            }
            let real = |p: &str| std::path::absolute(p).map(|a| a.canonicalize().unwrap_or(a)).ok();
            let meta_real = real(meta);
            if Path::new(meta).is_dir() {
                return Err(format!("the metadata output {meta} is a directory").into());
            }
            if meta_real.is_some() && (meta_real == real(input) || meta_real == real(output)) {
                return Err(format!("the metadata output {meta} is also the input or the output").into());
            }
            for (dir, what) in [(output, "output"), (input, "input")] {
                if let (true, Some(d), Some(m)) = (Path::new(dir).is_dir(), real(dir), meta_real.as_ref()) {
                    if m.starts_with(&d) {
                        return Err(format!("the metadata output {meta} is inside the {what} directory {dir}").into());
                    }
                }
            }
        }
    }
    if input != "-" && output != "-" {
        if let (Ok(a), Ok(b)) = (Path::new(input).canonicalize(), Path::new(output).canonicalize()) {
            if a == b {
                return Err("the input and the output are the same file".to_owned().into());
            }
        }
    }
    if input == "-" && out.is_dir() {
        return Err(Failure {
            message: "standard input needs an output file, not a directory".into(),
            hint: Some("give -o FILE or -o -".into()),
        });
    }
    Ok(())
}

/// The inputs `-i` names: the path itself if it exists, else the paths its glob pattern matches
/// (sorted), as the official tool expands it.
pub(crate) fn expand_sources(input: &str) -> Result<Vec<PathBuf>, Failure> {
    if Path::new(input).symlink_metadata().is_ok() {
        return Ok(vec![PathBuf::from(input)]);
    }
    let invalid = || Failure {
        message: format!("{input} matches no file"),
        hint: Some(
            "-i takes a file, a directory, a glob pattern that matches something, or - for standard input".into(),
        ),
    };
    // As Python's `glob.glob(pattern)`: `*` does not match a leading dot, and `**` is not
    // recursive (it is `*`).
    let options = glob::MatchOptions { require_literal_leading_dot: true, ..glob::MatchOptions::new() };
    let mut pattern = input.to_owned();
    while pattern.contains("**") {
        pattern = pattern.replace("**", "*");
    }
    let paths = glob::glob_with(&pattern, options).map_err(|_| invalid())?;
    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    found.sort();
    if found.is_empty() {
        return Err(invalid());
    }
    Ok(found)
}

/// Asks on standard input whether to replace `path` (`--interactive`).
pub(crate) fn confirm_replace(path: &Path) -> bool {
    eprint!("Overwrite existing output file \"{}\" with new contents? [y/N]:", path.display());
    let _ = io::stderr().flush();
    let mut answer = String::new();
    io::stdin().read_line(&mut answer).is_ok() && answer.trim_start().to_ascii_lowercase().starts_with('y')
}

/// The suite's name as the official tool spells it (Python's `aws_encryption_sdk.Algorithm`).
fn suite_name(id: u16) -> Value {
    super::SUITE_NAMES.iter().find(|(_, i)| *i == id).map_or(Value::Null, |(n, _)| json!(n))
}

/// The header as the official tool's metadata records it (`json_ready_header`): byte strings in
/// base64, EDKs sorted by provider id and key info, v1-only fields null on v2 messages.
pub(crate) fn header_json(h: &MessageHeader) -> Value {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let v1 = h.version() == MessageFormatVersion::V1;
    let mut edks: Vec<_> = h.encrypted_data_keys().iter().collect();
    edks.sort_by_cached_key(|e| [e.provider_id.as_bytes(), &e.provider_info].concat());
    json!({
        "algorithm": suite_name(h.suite().id()),
        "commitment_key": h.commitment().map(|c| b64(c)),
        "content_type": match h.content_type() { ContentType::Framed => 2, ContentType::NonFramed => 1 },
        "encrypted_data_keys": edks.iter().map(|e| json!({
            "encrypted_data_key": b64(&e.ciphertext),
            "key_provider": {"key_info": b64(&e.provider_info), "provider_id": b64(e.provider_id.as_bytes())},
        })).collect::<Vec<_>>(),
        "encryption_context": h.encryption_context().iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "frame_length": h.frame_length(),
        "header_iv_length": if v1 { json!(12) } else { Value::Null },
        "message_id": b64(h.message_id()),
        "type": if v1 { json!(128) } else { Value::Null },
        "version": if v1 { "1.0" } else { "2.0" },
    })
}

/// The header authentication fields as the official tool's decrypt metadata records them.
pub(crate) fn header_auth_json(h: &MessageHeader) -> Value {
    let (iv, tag) = h.header_auth();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    json!({"iv": b64(iv), "tag": b64(tag)})
}

/// The path as the official tool's metadata records it: absolute and normalized as Python's
/// `os.path.abspath` makes it (`.` and `..` folded, symlinks kept), or `<stdin>` / `<stdout>`.
pub(crate) fn path_json(p: &Option<PathBuf>, stream: &str) -> Value {
    match p {
        None => json!(stream),
        Some(p) => json!(normalized(&std::path::absolute(p).unwrap_or_else(|_| p.clone())).display().to_string()),
    }
}

/// `.` and `..` folded away lexically (`os.path.normpath` of an absolute path).
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// One metadata line formatted as Python's `json.dumps(…, sort_keys=True)` writes it: `", "`
/// and `": "` separators, non-ASCII characters escaped (`\uXXXX`, surrogate pairs beyond the BMP).
pub(crate) fn python_json(v: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    // A `Value` always serializes (its map keys are strings); the buffer is UTF-8 by construction.
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8(out).unwrap_or_default()
}

struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.begin_array_value(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn recognizes_official_command_lines_only() {
        assert!(is_official_command_line(&os(&["esdk", "-i", "x", "-e", "-o", "y"])));
        assert!(is_official_command_line(&os(&["esdk", "--decrypt-unsigned"])));
        assert!(is_official_command_line(&os(&["esdk", "@args.conf"])));
        assert!(!is_official_command_line(&os(&["esdk", "encrypt", "-i", "x", "-e"])));
        assert!(!is_official_command_line(&os(&["esdk", "--version"])));
        assert!(!is_official_command_line(&os(&["esdk", "-v", "--", "-e"])));
    }

    #[test]
    fn paths_normalize_as_python_abspath_does() {
        assert_eq!(normalized(Path::new("/a/b/../c/./d")), PathBuf::from("/a/c/d"));
        assert_eq!(normalized(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn abbreviations_and_clusters_name_actions_as_argparse_reads_them() {
        for yes in ["--encrypt", "--decrypt-u", "--decrypt-unsigned", "-qe", "-rd", "-Sd"] {
            assert!(names_action(yes), "{yes}");
        }
        // `--encr` is ambiguous (encrypt, encryption-context), `--decr` too (decrypt,
        // decrypt-unsigned); `-ei` clusters an option that takes a value.
        for no in ["--encr", "--decr", "--en", "--input", "-ei", "-q", "--", "---e"] {
            assert!(!names_action(no), "{no}");
        }
    }

    #[test]
    fn python_json_matches_json_dumps() {
        // json.dumps({"b": [1, "é😀"], "a": None, "c": {"d": True}}, sort_keys=True)
        let v = json!({"b": [1, "é😀"], "a": null, "c": {"d": true}});
        assert_eq!(python_json(&v), r#"{"a": null, "b": [1, "\u00e9\ud83d\ude00"], "c": {"d": true}}"#);
        assert_eq!(python_json(&json!({"q": "a\"\\\n\u{1}"})), r#"{"q": "a\"\\\n\u0001"}"#);
    }

    #[test]
    fn variables_and_home_expand_as_python_does() {
        std::env::set_var("ESDK_OFFICIAL_TEST_VAR", "v");
        assert_eq!(expand_variables("a$ESDK_OFFICIAL_TEST_VAR/b"), "av/b");
        assert_eq!(expand_variables("${ESDK_OFFICIAL_TEST_VAR}x"), "vx");
        assert_eq!(expand_variables("$ESDK_UNSET_VARIABLE_X y $"), "$ESDK_UNSET_VARIABLE_X y $");
        assert_eq!(expand_variables("${unclosed"), "${unclosed");
        assert_eq!(expand_home("a~"), "a~");
    }

    #[test]
    fn lines_split_as_python_shlex_splits_them() {
        let split = |l: &str| split_line(l).unwrap();
        assert_eq!(split(r#"-w key=a 'key=b c' # trailing"#), ["-w", "key=a", "key=b c"]);
        assert_eq!(split("a#b c"), ["a"]);
        assert_eq!(split(r"'it\'s' x\ y"), ["it's", "x y"]);
        assert_eq!(split(r#""a\b" '' "#), [r"a\b", ""]);
        assert_eq!(split("'#x' y"), ["#x", "y"]);
        assert!(split_line("'open").is_err() && split_line("end\\").is_err());
    }

    #[test]
    fn argument_files_expand_with_comments_and_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("inner");
        std::fs::write(&inner, "--encode\n").unwrap();
        let outer = dir.path().join("outer");
        std::fs::write(&outer, format!("# keys\n-w key=a 'key=b c' # trailing\n@{}\n", inner.display())).unwrap();
        let args = expand_argument_files(os(&["esdk", "-e", &format!("@{}", outer.display())]), 0).ok().unwrap();
        assert_eq!(args, os(&["esdk", "-e", "-w", "key=a", "key=b c", "--encode"]));
        let looped = dir.path().join("loop");
        std::fs::write(&looped, format!("@{}\n", looped.display())).unwrap();
        let err = expand_argument_files(os(&["esdk", &format!("@{}", looped.display())]), 0).err().unwrap();
        assert!(err.message.contains("nested"), "{}", err.message);
    }
}
