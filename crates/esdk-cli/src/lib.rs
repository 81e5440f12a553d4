//! The parsers of the `esdk` command-line tool, as a library so that they can be fuzzed
//! (`fuzz/fuzz_targets/keyspec.rs`) and tested without running the binary. The tool itself is
//! `src/main.rs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod keyspec;
