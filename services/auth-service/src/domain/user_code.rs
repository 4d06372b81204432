//! RFC 8628 user codes: short, typed by a person, from an alphabet without look-alikes.
//!
//! The 20 consonants `BCDFGHJKLMNPQRSTVWXZ` (RFC 8628 §6.1): no digits, so no 0/O or 1/I/L
//! confusion, no vowels, so no words. A code is shown in groups of four (`WDJB-MJHT`) and
//! accepted in any case, with or without dashes and spaces. 8 letters carry
//! log2(20^8) ≈ 34.6 bits; docs/device-flow.md turns that and the entry limits into the odds
//! of a guessing attack.

/// The alphabet of user codes.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A new user code of `len` letters from `random` bytes (one byte per letter, drawn without
/// modulo bias: bytes ≥ 240 are rejected by the caller's loop in [`generate`]).
pub fn generate(len: usize, mut fill: impl FnMut(&mut [u8])) -> String {
    let mut letters = Vec::with_capacity(len);
    let mut buf = [0u8; 32];
    while letters.len() < len {
        fill(&mut buf);
        for b in buf {
            // 240 = 12 × 20: the largest multiple of 20 below 256.
            if b < 240 && letters.len() < len {
                letters.push(ALPHABET[(b % 20) as usize]);
            }
        }
    }
    display(std::str::from_utf8(&letters).expect("ASCII"))
}

/// `ABCDEFGH` → `ABCD-EFGH` (groups of four).
pub fn display(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect::<Vec<_>>()
        .join("-")
}

/// What a person typed, as stored: upper case, dashes and whitespace removed. `None` when it
/// cannot be a user code of `len` letters (wrong length, a character outside the alphabet), so
/// a malformed entry needs no store look-up.
pub fn normalise(input: &str, len: usize) -> Option<String> {
    if input.len() > 4 * len {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == len && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_and_normalise_back() {
        let mut n = 0u8;
        let code = generate(8, |b| {
            for x in b.iter_mut() {
                *x = n;
                n = n.wrapping_add(37);
            }
        });
        assert_eq!(code.len(), 9);
        assert_eq!(&code[4..5], "-");
        let plain = code.replace('-', "");
        assert!(plain.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(normalise(&code.to_lowercase(), 8).as_deref(), Some(&*plain));
        assert_eq!(
            normalise(&format!(" {plain} "), 8).as_deref(),
            Some(&*plain)
        );
    }

    #[test]
    fn look_alikes_and_wrong_lengths_are_refused() {
        assert_eq!(normalise("BCDF-GHJK", 8).as_deref(), Some("BCDFGHJK"));
        for bad in [
            "BCDF-GHJ0",
            "BCDF-GHJO",
            "BCDF-GHJ1",
            "BCDF-GHJI",
            "BCDF-GHJ",
            "BCDFGHJKL",
            "BCDF-GHJÄ",
        ] {
            assert_eq!(normalise(bad, 8), None, "{bad}");
        }
        assert_eq!(normalise(&"-".repeat(100), 8), None);
    }

    #[test]
    fn bytes_past_the_last_multiple_of_twenty_are_skipped() {
        // Only 255s first: nothing may be drawn from them.
        let mut calls = 0;
        let code = generate(6, |b| {
            calls += 1;
            b.fill(if calls == 1 { 255 } else { 0 });
        });
        assert_eq!(code, "BBBB-BB");
        assert_eq!(calls, 2);
    }
}
