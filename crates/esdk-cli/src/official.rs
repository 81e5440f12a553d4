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

/// Whether `args` (the program name first) is an `aws-encryption-cli` command line.
pub(crate) fn is_official_command_line(args: &[OsString]) -> bool {
    let rest = args.get(1..).unwrap_or_default();
    if rest.first().and_then(|a| a.to_str()).is_some_and(|a| SUBCOMMANDS.contains(&a)) {
        return false;
    }
    rest.iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .any(|a| ACTIONS.contains(&a) || a.starts_with('@'))
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
    #[arg(short = 'e', long)]
    encrypt: bool,
    /// Decrypt data.
    #[arg(short = 'd', long)]
    decrypt: bool,
    /// Decrypt data and refuse signed messages.
    #[arg(long = "decrypt-unsigned")]
    decrypt_unsigned: bool,
    /// Suppress metadata output.
    #[arg(short = 'S', long = "suppress-metadata")]
    suppress_metadata: bool,
    /// File to which to append metadata records (- for standard output).
    #[arg(long = "metadata-output", value_name = "FILE")]
    metadata_output: Option<String>,
    /// Replace the metadata file instead of appending to it.
    #[arg(long = "overwrite-metadata")]
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
    #[arg(short = 'b', long)]
    buffer: bool,
    /// Input file, directory or glob pattern, or - for standard input.
    #[arg(short = 'i', long, value_name = "PATH")]
    input: String,
    /// Output file or directory, or - for standard output.
    #[arg(short = 'o', long, value_name = "PATH")]
    output: String,
    /// Base64-encode the output.
    #[arg(long)]
    encode: bool,
    /// Base64-decode the input.
    #[arg(long)]
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
    #[arg(long)]
    interactive: bool,
    /// Never replace an existing output file (skip the input).
    #[arg(long = "no-overwrite")]
    no_overwrite: bool,
    /// Process directories.
    #[arg(short = 'r', short_alias = 'R', long)]
    recursive: bool,
    /// Log more (repeatable).
    #[arg(short = 'v', action = ArgAction::Count)]
    verbosity: u8,
    /// No warnings.
    #[arg(short = 'q', long)]
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
    check_arguments(&cli, &groups, mode == "encrypt");
    let (context, required_keys) = if mode == "encrypt" {
        (cli.encryption_context.clone(), Vec::new())
    } else {
        cli.encryption_context.iter().cloned().partition(|c| c.contains('='))
    };
    if cli.interactive && cli.no_overwrite {
        return Err("--interactive and --no-overwrite contradict each other".to_owned().into());
    }
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
fn check_arguments(cli: &OfficialCli, groups: &[Vec<String>], encrypting: bool) {
    let usage = |message: String| -> ! {
        OfficialCli::command().error(clap::error::ErrorKind::ValueValidation, message).exit()
    };
    for group in groups {
        match crate::keyspec::parse_wrapping_keys(group) {
            Err(e) => usage(format!("--wrapping-keys {}: {e}", group.join(" "))),
            Ok(crate::keyspec::WrappingKeys::Discovery { .. }) if encrypting => {
                usage("--wrapping-keys discovery=true: discovery applies to decryption only".into())
            }
            Ok(_) => {}
        }
    }
    if !cli.caching.is_empty() {
        if let Err(e) = crate::keyspec::parse_caching(&cli.caching) {
            usage(format!("--caching: {e}"))
        }
    }
    let pairs: Vec<String> = cli.encryption_context.iter().filter(|c| encrypting || c.contains('=')).cloned().collect();
    if let Err(e) = crate::keyspec::parse_context(&pairs) {
        usage(format!("--encryption-context: {e}"))
    }
    if let Some(a) = cli.algorithm.as_deref().filter(|a| !super::SUITE_NAMES.iter().any(|(n, _)| n == a)) {
        let names: Vec<&str> = super::SUITE_NAMES.iter().map(|(n, _)| *n).collect();
        usage(format!("--algorithm {a}: not one of {}", names.join(", ")))
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
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read the argument file {path}: {e}"))?;
        let mut expanded = Vec::new();
        for line in text.lines() {
            let words = shlex::split(line).ok_or_else(|| {
                format!("{path}: cannot split the line {:?} into arguments (unclosed quote?)", line.trim())
            })?;
            for word in words.into_iter().take_while(|w| !w.starts_with('#')) {
                expanded.push(OsString::from(expand_variables(&expand_home(word.trim()))));
            }
        }
        out.extend(expand_argument_files(expanded, depth + 1)?);
    }
    Ok(out)
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
    let paths = glob::glob(input).map_err(|_| invalid())?;
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

/// The path as the official tool's metadata records it: absolute, or `<stdin>` / `<stdout>`.
pub(crate) fn path_json(p: &Option<PathBuf>, stream: &str) -> Value {
    match p {
        None => json!(stream),
        Some(p) => json!(std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string()),
    }
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
