//! `${NAME}` substitution from the environment.
//!
//! Only the exact form `${NAME}` is replaced, where NAME is letters, digits and `_` and does
//! not start with a digit. A `$` not followed by `{` is kept as it is. An unset variable is
//! an error, so that a typo cannot turn into an empty secret.

use std::borrow::Cow;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` where NAME is not set.
    #[error("environment variable {0} is not set (referenced as `${{{0}}}`); export it or change the value")]
    Unset(String),
    /// `${` without a valid name and a closing `}`.
    #[error("`${{` must be followed by a variable name and `}}`, as in ${{CLOUD_KEY}}")]
    Malformed,
}

/// Expands `${NAME}` references in `value` using `lookup`.
pub fn expand_with<'a>(
    value: &'a str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, EnvError> {
    if !value.contains("${") {
        return Ok(Cow::Borrowed(value));
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(EnvError::Malformed)?;
        let name = &after[..end];
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(EnvError::Malformed);
        }
        let val = lookup(name).ok_or_else(|| EnvError::Unset(name.to_owned()))?;
        out.push_str(&val);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Expands `${NAME}` references from the process environment.
pub fn expand(value: &str) -> Result<Cow<'_, str>, EnvError> {
    expand_with(value, |name| std::env::var(name).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cr$t".to_owned())
    }

    #[test]
    fn replaces_references() {
        assert_eq!(expand_with("a-${KEY}-b", lookup).unwrap(), "a-s3cr$t-b");
        assert_eq!(expand_with("${KEY}${KEY}", lookup).unwrap(), "s3cr$ts3cr$t");
        assert_eq!(expand_with("cost $5", lookup).unwrap(), "cost $5");
    }

    #[test]
    fn unset_and_malformed_are_errors() {
        assert_eq!(
            expand_with("${NOPE}", lookup),
            Err(EnvError::Unset("NOPE".into()))
        );
        assert_eq!(expand_with("${KEY", lookup), Err(EnvError::Malformed));
        assert_eq!(expand_with("${1X}", lookup), Err(EnvError::Malformed));
        assert_eq!(expand_with("${}", lookup), Err(EnvError::Malformed));
    }
}
