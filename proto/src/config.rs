/// A field of a role's `Config` that cannot be used: which, and why. Every role's
/// `Config::validate` answers with it, so the binary can name the setting behind the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct InvalidConfig {
    /// The field, as the role's `Config` names it.
    pub field: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl InvalidConfig {
    /// `field` refused for `problem`.
    pub fn new(field: &'static str, problem: impl Into<String>) -> Self {
        Self {
            field,
            problem: problem.into(),
        }
    }
}
