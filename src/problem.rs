//! Problems found in input files: what `validate` prints and what a failed reload logs.

use serde::Serialize;
use std::fmt;

/// One problem in one input file: the file, the feature, deal or line it concerns, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The file, relative to the data directory.
    pub file: String,
    /// The feature, deal, group, selector or line concerned, if the problem is that narrow.
    pub item: Option<String>,
    /// What is wrong, in words.
    pub reason: String,
}

impl Problem {
    /// A problem with the whole file or one item in it.
    pub fn new(file: impl Into<String>, item: Option<String>, reason: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            item,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.item {
            Some(item) => write!(f, "{}: {}: {}", self.file, item, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}
