//! Which user owns which MCP session. A session id alone is never enough (MCP 2025-11-25:
//! session ids SHOULD be bound to the user; 2026-07-28: possession of a handle is not
//! authentication): a request naming another user's session is answered as if the session did
//! not exist.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Sessions idle this long are forgotten (rmcp's own idle limit is shorter).
const IDLE: Duration = Duration::from_secs(3600);

#[derive(Clone, Default)]
pub struct SessionOwners {
    owners: Arc<RwLock<HashMap<String, (String, Instant)>>>,
}

impl SessionOwners {
    /// Records `owner` (a subject) for a newly created session.
    pub fn bind(&self, session: &str, owner: &str) {
        let mut m = self.owners.write().expect("session owners");
        if m.len() > 10_000 {
            let now = Instant::now();
            m.retain(|_, (_, at)| now.duration_since(*at) < IDLE);
        }
        m.insert(session.to_owned(), (owner.to_owned(), Instant::now()));
    }

    /// Whether `subject` owns `session` (and marks it used).
    pub fn owned_by(&self, session: &str, subject: &str) -> bool {
        if let Some((owner, at)) = self.owners.read().expect("session owners").get(session) {
            if owner != subject || at.elapsed() >= IDLE {
                return false;
            }
        } else {
            return false;
        }
        if let Some(entry) = self
            .owners
            .write()
            .expect("session owners")
            .get_mut(session)
        {
            entry.1 = Instant::now();
        }
        true
    }

    pub fn forget(&self, session: &str) {
        self.owners.write().expect("session owners").remove(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_may_use_a_session() {
        let s = SessionOwners::default();
        s.bind("sid", "alice");
        assert!(s.owned_by("sid", "alice"));
        assert!(!s.owned_by("sid", "bob"));
        assert!(!s.owned_by("other", "alice"));
        s.forget("sid");
        assert!(!s.owned_by("sid", "alice"));
    }
}
