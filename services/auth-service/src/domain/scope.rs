//! Scopes (RFC 6749 §3.3): a space-delimited set of scope tokens.

use std::collections::BTreeSet;
use std::fmt;

/// A set of scope tokens, kept sorted so that its string form is stable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(BTreeSet<String>);

/// A scope string with a character that RFC 6749 §3.3 does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scope contains an invalid character")]
pub struct InvalidScope;

impl ScopeSet {
    /// Parses `"a b  c"`. Empty input gives an empty set.
    pub fn parse(s: &str) -> Result<Self, InvalidScope> {
        let mut set = BTreeSet::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
            {
                return Err(InvalidScope);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    /// A set from trusted strings (configuration).
    pub fn from_strings<I: IntoIterator<Item = S>, S: Into<String>>(it: I) -> Self {
        Self(it.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.contains(scope)
    }

    pub fn is_subset(&self, other: &ScopeSet) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Scopes of `self` that are not in `other`.
    pub fn difference(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(self.0.intersection(&other.0).cloned().collect())
    }

    pub fn remove(&mut self, scope: &str) -> bool {
        self.0.remove(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let s = ScopeSet::parse("b  a b").unwrap();
        assert_eq!(s.to_string(), "a b");
        assert!(ScopeSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn refuses_illegal_characters() {
        assert_eq!(ScopeSet::parse("a\"b"), Err(InvalidScope));
        assert_eq!(ScopeSet::parse("a\\b"), Err(InvalidScope));
        assert_eq!(ScopeSet::parse("a\tb"), Err(InvalidScope));
        assert_eq!(ScopeSet::parse("é"), Err(InvalidScope));
    }

    #[test]
    fn subset_and_difference() {
        let granted = ScopeSet::parse("mcp:tools.read mcp:tools.write").unwrap();
        let asked = ScopeSet::parse("mcp:tools.read").unwrap();
        assert!(asked.is_subset(&granted));
        assert!(!granted.is_subset(&asked));
        assert_eq!(granted.difference(&asked).to_string(), "mcp:tools.write");
    }
}
