//! `${NAME}` and `${NAME:-default}` substitution from the environment.
//!
//! Rules:
//! - NAME is letters, digits and `_`, and does not start with a digit.
//! - `${NAME}` is replaced by NAME's value. An unset variable is an error, so that a typo
//!   cannot turn into an empty secret.
//! - `${NAME:-default}` is replaced by NAME's value when it is set and not empty, and by
//!   `default` (taken as it is, up to the first `}`) otherwise.
//! - A `$` not followed by `{` is kept as it is.
//!
//! The result remembers which variables supplied text, so that an error about the value
//! can name the variable instead of printing what may be a secret.

use std::borrow::Cow;

/// Why a value could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${NAME}` where NAME is not set.
    #[error("environment variable {0} is not set (referenced as `${{{0}}}`); export it, or give a default as in `${{{0}:-value}}`")]
    Unset(String),
    /// `${` without a valid name and a closing `}`.
    #[error("`${{` must be followed by a variable name and `}}`, as in ${{CLOUD_KEY}} or ${{PORT:-9092}}")]
    Malformed,
}

/// A value after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded<'a> {
    /// The text.
    pub value: Cow<'a, str>,
    /// Variables whose values are part of the text, in order of appearance.
    pub from_env: Vec<String>,
}

/// Expands references in `value`, looking variables up with `lookup`.
pub fn expand_with<'a>(
    value: &'a str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Expanded<'a>, EnvError> {
    if !value.contains("${") {
        return Ok(Expanded {
            value: Cow::Borrowed(value),
            from_env: Vec::new(),
        });
    }
    let mut out = String::with_capacity(value.len());
    let mut from_env = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(EnvError::Malformed)?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(EnvError::Malformed);
        }
        match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => {
                out.push_str(&v);
                if !from_env.iter().any(|n| n == name) {
                    from_env.push(name.to_owned());
                }
            }
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(EnvError::Unset(name.to_owned())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Expanded {
        value: Cow::Owned(out),
        from_env,
    })
}

/// Looks a variable up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "KEY" => Some("s3cr$t".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn text(v: &str) -> Result<(String, Vec<String>), EnvError> {
        expand_with(v, &lookup).map(|e| (e.value.into_owned(), e.from_env))
    }

    #[test]
    fn replaces_references() {
        assert_eq!(
            text("a-${KEY}-b").unwrap(),
            ("a-s3cr$t-b".into(), vec!["KEY".into()])
        );
        assert_eq!(text("${KEY}${KEY}").unwrap().0, "s3cr$ts3cr$t");
        assert_eq!(text("cost $5").unwrap(), ("cost $5".into(), vec![]));
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(text("${NOPE:-9092}").unwrap(), ("9092".into(), vec![]));
        assert_eq!(text("${EMPTY:-x}").unwrap(), ("x".into(), vec![]));
        assert_eq!(
            text("${KEY:-x}").unwrap(),
            ("s3cr$t".into(), vec!["KEY".into()])
        );
        assert_eq!(text("h:${NOPE:-}").unwrap().0, "h:");
        assert_eq!(
            text("${EMPTY}").unwrap(),
            (String::new(), vec!["EMPTY".into()])
        );
    }

    #[test]
    fn unset_and_malformed_are_errors() {
        assert_eq!(text("${NOPE}"), Err(EnvError::Unset("NOPE".into())));
        assert_eq!(text("${KEY"), Err(EnvError::Malformed));
        assert_eq!(text("${1X}"), Err(EnvError::Malformed));
        assert_eq!(text("${}"), Err(EnvError::Malformed));
        assert_eq!(text("${:-x}"), Err(EnvError::Malformed));
    }
}
