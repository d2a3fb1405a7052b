//! [`SessionId`]: the id a session is known by, on the wire and in the SDK.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The id of a session: an opaque string (a UUID for sessions this crate creates),
/// serialized as that string (`"sessionId": "…"`).
///
/// It derefs to `str`, so it passes wherever an id is asked for as `&str` or
/// `impl AsRef<str>`: `&id` is an id argument of every
/// [`SessionManager`](crate::SessionManager) method.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh random id (UUID v4), unguessable by other clients.
    pub fn random() -> Self {
        SessionId(uuid::Uuid::new_v4().to_string())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SessionId {
    type Err = Error;

    /// Any non-empty string is an id (whether a session has it is for the manager to say).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(Error::invalid_input("a session id cannot be empty"));
        }
        Ok(SessionId(s.to_owned()))
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        SessionId(id)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        SessionId(id.to_owned())
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> Self {
        id.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Deref for SessionId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for SessionId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<SessionId> for String {
    fn eq(&self, other: &SessionId) -> bool {
        *self == other.0
    }
}

impl PartialEq<SessionId> for str {
    fn eq(&self, other: &SessionId) -> bool {
        self == other.0
    }
}

impl PartialEq<SessionId> for &str {
    fn eq(&self, other: &SessionId) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_as_a_plain_string_and_parses_back() {
        let id = SessionId::random();
        let json = serde_json::to_value(&id).unwrap();
        assert_eq!(json, serde_json::Value::String(id.to_string()));
        assert_eq!(serde_json::from_value::<SessionId>(json).unwrap(), id);
        assert_eq!(id.as_str().parse::<SessionId>().unwrap(), id);
        assert!("".parse::<SessionId>().is_err());
        assert_ne!(SessionId::random(), id, "ids must not repeat");
    }
}
