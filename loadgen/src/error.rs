//! The one error of every option's parser.

/// Text that is not a valid option value, and what was expected instead, in one sentence.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(String);

impl ParseError {
    pub(crate) fn new(why: impl Into<String>) -> ParseError {
        ParseError(why.into())
    }
}
