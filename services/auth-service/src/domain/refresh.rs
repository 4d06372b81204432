//! Refresh-token rotation and its grace period.
//!
//! Every use of a refresh token rotates it: the presented token is marked spent and a successor
//! is issued. Several tabs or processes of one client often refresh with the same token at the
//! same moment; without a grace period all but one would be treated as a replay and the user
//! logged out. The rule:
//!
//! * an **active** token rotates;
//! * a **spent** token is still honoured while both hold: it was spent at most `grace` seconds
//!   ago, and its successor has not been used yet. It is answered with **the same successor** the
//!   rotation stored, never a new one: the successor is derived from the presented token under
//!   the server key ([`crate::domain::token::KeyRing::refresh_successor`]), so every presentation
//!   yields the identical refresh token, and a thief racing the legitimate client inside the
//!   window ends up holding the client's own token instead of a second live branch of the
//!   family. When the stored successor is not the one derived now (the current key changed in
//!   between), the request is refused instead;
//! * any other use of a spent token is **reuse**: the whole family (grant) is revoked.

/// What to do with a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// First use: spend it and issue a successor.
    Rotate,
    /// A concurrent use within the grace period: answer with the successor already stored.
    GraceRepeat,
    /// A replay: revoke the family.
    Reuse,
}

/// Decides from the token's state. `rotated_at` is when it was spent (Unix seconds, `None` while
/// active); `successor_used` whether any successor has been redeemed since.
pub fn decide(
    rotated_at: Option<i64>,
    successor_used: bool,
    now: i64,
    grace_secs: i64,
) -> RefreshDecision {
    match rotated_at {
        None => RefreshDecision::Rotate,
        // A zero grace disables it: with whole seconds, `now - at <= 0` would still hold within
        // the second of the rotation.
        Some(at) if grace_secs > 0 && !successor_used && now - at <= grace_secs => {
            RefreshDecision::GraceRepeat
        }
        Some(_) => RefreshDecision::Reuse,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RefreshDecision::*;

    #[test]
    fn first_use_rotates() {
        assert_eq!(decide(None, false, 100, 10), Rotate);
    }

    #[test]
    fn concurrent_use_within_grace_is_honoured() {
        assert_eq!(decide(Some(100), false, 100, 10), GraceRepeat);
        assert_eq!(decide(Some(100), false, 110, 10), GraceRepeat);
    }

    #[test]
    fn grace_ends_after_its_time() {
        assert_eq!(decide(Some(100), false, 111, 10), Reuse);
    }

    #[test]
    fn grace_ends_when_a_successor_is_used() {
        assert_eq!(decide(Some(100), true, 101, 10), Reuse);
    }

    #[test]
    fn zero_grace_means_strict_single_use() {
        assert_eq!(decide(Some(100), false, 101, 0), Reuse);
        assert_eq!(decide(Some(100), false, 100, 0), Reuse);
    }
}
