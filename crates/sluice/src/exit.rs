//! How a command fails: the message for the user and the exit code.

use std::fmt;
use std::process::ExitCode;

/// A failed command: `Invalid` is the user's input (exit 2), `Failed` the
/// operation itself (exit 1).
#[derive(Debug)]
pub enum Failure {
    /// The input was wrong; the message says what would be valid. Already
    /// printed details (e.g. a list of plan errors) may precede it.
    Invalid(anyhow::Error),
    /// The operation failed.
    Failed(anyhow::Error),
}

impl Failure {
    pub fn invalid(message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> Failure {
        Failure::Invalid(anyhow::Error::msg(message))
    }

    /// Prints the error chain to stderr and gives the exit code.
    pub fn report(self) -> ExitCode {
        let (error, code) = match self {
            Failure::Invalid(error) => (error, 2),
            Failure::Failed(error) => (error, 1),
        };
        eprintln!("error: {error:#}");
        ExitCode::from(code)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Failed(error)
    }
}
