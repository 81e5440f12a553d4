//! Parsing shared by the `esdk` command-line tool and its fuzz target (feature `cli`).

pub mod keyspec;
