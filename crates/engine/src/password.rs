//! The rules a clone password must meet: DBLab's strength rule (at least 60 bits of entropy),
//! and Scion's limits on what Postgres can take (no NUL byte) and what hashing it may cost.
//!
//! DBLab uses `go-password-validator`; this is the same estimate: the size of the character
//! classes used, raised to the length after collapsing runs of one character longer than two
//! and well-known sequences (`abcdef`, `123456`, `qwerty`).

/// DBLab's minimum.
pub const MIN_ENTROPY_BITS: f64 = 60.0;

/// The longest password taken, in bytes: far above any real one, and short enough that SCRAM
/// hashing it (4096 HMAC rounds keyed by it) stays a matter of milliseconds.
pub const MAX_PASSWORD_BYTES: usize = 1024;

const SEQUENCES: &[&str] = &[
    "0123456789",
    "abcdefghijklmnopqrstuvwxyz",
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
    "01234567890",
];
const SPECIAL: &str = " !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The estimated entropy of `password`, in bits.
pub fn entropy_bits(password: &str) -> f64 {
    let base = base(password);
    let length = effective_length(password);
    if base == 0 || length == 0 {
        return 0.0;
    }
    length as f64 * (base as f64).log2()
}

/// Checks `password` against the limits and DBLab's minimum; the error says what is wrong.
pub fn check(password: &str) -> Result<(), String> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password is {} bytes long; at most {MAX_PASSWORD_BYTES} are taken",
            password.len()
        ));
    }
    if password.contains('\0') {
        // Postgres ends a password at the first NUL: nobody could log in with the rest.
        return Err("the password must not contain a NUL byte".to_owned());
    }
    let bits = entropy_bits(password);
    if bits >= MIN_ENTROPY_BITS {
        Ok(())
    } else {
        Err(format!(
            "the password is too weak ({bits:.0} bits of entropy, at least {MIN_ENTROPY_BITS:.0} \
             needed): make it longer or mix lower and upper case letters, digits and symbols"
        ))
    }
}

fn base(password: &str) -> u32 {
    let mut base = 0;
    let mut other = false;
    type InClass = fn(&char) -> bool;
    let classes: [(InClass, u32); 4] = [
        (char::is_ascii_lowercase, 26),
        (char::is_ascii_uppercase, 26),
        (char::is_ascii_digit, 10),
        (|c| SPECIAL.contains(*c), SPECIAL.len() as u32),
    ];
    for (belongs, size) in classes {
        if password.chars().any(|c| belongs(&c)) {
            base += size;
        }
    }
    for c in password.chars() {
        if !c.is_ascii_alphanumeric() && !SPECIAL.contains(c) {
            other = true;
        }
    }
    if other {
        // Any character outside ASCII widens the space; count it as one more class.
        base += 32;
    }
    base
}

fn effective_length(password: &str) -> usize {
    let lower = password.to_lowercase();
    let mut text = lower.as_str().to_owned();
    for sequence in SEQUENCES {
        text = collapse_sequences(&text, sequence);
    }
    collapse_runs(&text).chars().count()
}

/// Keeps at most two characters of each run of one repeated character.
fn collapse_runs(text: &str) -> String {
    let mut out = String::new();
    let mut previous = None;
    let mut run = 0;
    for c in text.chars() {
        if Some(c) == previous {
            run += 1;
        } else {
            run = 1;
            previous = Some(c);
        }
        if run <= 2 {
            out.push(c);
        }
    }
    out
}

/// Keeps the first two characters of every run of three or more consecutive characters of
/// `sequence`, forwards or backwards.
fn collapse_sequences(text: &str, sequence: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let position = |c: char| sequence.find(c);
    let mut out = String::new();
    let mut index = 0;
    while index < chars.len() {
        let mut end = index + 1;
        if let Some(start) = position(chars[index]) {
            for direction in [1i64, -1] {
                let mut next = index + 1;
                let mut expected = start as i64 + direction;
                while next < chars.len()
                    && expected >= 0
                    && position(chars[next]).map(|p| p as i64) == Some(expected)
                {
                    next += 1;
                    expected += direction;
                }
                end = end.max(next);
            }
        }
        let run = end - index;
        let keep = if run >= 3 { 2 } else { run };
        out.extend(&chars[index..index + keep]);
        index = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords_are_refused() {
        for weak in [
            "",
            "password",
            "12345678",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "abcdefghijklmnop",
            "Qwerty123",
        ] {
            assert!(check(weak).is_err(), "{weak:?} passed with {} bits", entropy_bits(weak));
        }
    }

    #[test]
    fn strong_passwords_pass() {
        for strong in ["Sc1on-clone-pass!", "correct horse battery staple", "x9$Lq2#vP7@mZ4"] {
            assert!(check(strong).is_ok(), "{strong:?} failed with {} bits", entropy_bits(strong));
        }
    }

    #[test]
    fn passwords_postgres_cannot_take_are_refused() {
        let strong = "x9$Lq2#vP7@mZ4";
        assert!(check(&format!("{strong}\0tail")).unwrap_err().contains("NUL"));
        let longest = format!("{strong}{}", "y".repeat(MAX_PASSWORD_BYTES - strong.len()));
        assert!(check(&longest).is_ok(), "{MAX_PASSWORD_BYTES} bytes are allowed");
        let over = format!("{longest}y");
        assert!(check(&over).unwrap_err().contains("at most 1024"), "one byte more is refused");
    }

    #[test]
    fn runs_and_sequences_count_little() {
        assert_eq!(collapse_runs("aaaab"), "aab");
        assert_eq!(collapse_sequences("xabcdy", "abcdefghijklmnopqrstuvwxyz"), "xaby");
        assert_eq!(collapse_sequences("x4321y", "0123456789"), "x43y");
    }
}
