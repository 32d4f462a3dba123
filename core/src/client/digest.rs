//! SHA-256 of what a fetch receives: the digest type, its hexadecimal form, and the checksum
//! lists `sha256sum` writes (`<64 hex>  <name>`, or `<64 hex> *<name>` in binary mode).
//!
//! The digest is computed as the data arrives, on the buffered receive path (the zero-copy
//! path never brings the data into the process), so the file is never read a second time.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 digest: 32 bytes, shown and parsed as 64 hexadecimal digits.
///
/// ```
/// use filefetch::Sha256Digest;
/// let digest = Sha256Digest::of(b"abc");
/// let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
/// assert_eq!(digest.to_string(), hex);
/// assert_eq!(hex.parse::<Sha256Digest>()?, digest);
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(data).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Sha256Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Sha256Digest(bytes)
    }
}

impl From<Sha256Digest> for [u8; 32] {
    fn from(digest: Sha256Digest) -> Self {
        digest.0
    }
}

impl fmt::Display for Sha256Digest {
    /// Lowercase hexadecimal, as `sha256sum` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = Error;

    /// 64 hexadecimal digits, in either case; anything else is an
    /// [`Error::InvalidOption`] for `sha256`.
    fn from_str(text: &str) -> Result<Self> {
        parse_hex(text).ok_or_else(|| {
            Error::invalid("sha256", format!("{text:?} is not 64 hexadecimal digits"))
        })
    }
}

fn parse_hex(text: &str) -> Option<Sha256Digest> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(Sha256Digest(bytes))
}

/// The running digest of one attempt's data.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hashing {
    hasher: Sha256,
}

impl Hashing {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
    }

    /// The digest of everything received, checked against `expected` when there is one.
    pub(crate) fn finish(self, expected: Option<Sha256Digest>) -> Result<Sha256Digest> {
        let actual = Sha256Digest(self.hasher.finalize().into());
        match expected {
            Some(expected) if expected != actual => {
                Err(Error::ChecksumMismatch { expected, actual })
            }
            _ => Ok(actual),
        }
    }
}

/// The digest of an attempt's data, when one was computed (`hash`), checked against
/// `expected` when there is one.
pub(crate) fn check(
    hash: Option<Hashing>,
    expected: Option<Sha256Digest>,
) -> Result<Option<Sha256Digest>> {
    hash.map(|hash| hash.finish(expected)).transpose()
}

/// A checksum list in the format `sha256sum` writes and `sha256sum -c` reads: one
/// `<64 hex>  <name>` (text mode) or `<64 hex> *<name>` (binary mode) a line, a name with a
/// backslash or a newline escaped and the line then starting with `\`. Blank lines are
/// skipped and a trailing `\r` is ignored; any other line that does not fit is refused.
///
/// ```
/// use filefetch::Sha256Sums;
/// let sums: Sha256Sums = "\
/// ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  abc.txt
/// e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 *dir/empty.bin
/// ".parse()?;
/// assert_eq!(sums.len(), 2);
/// // The requested name first, then its last component.
/// assert!(sums.get("dir/empty.bin").is_some());
/// assert!(sums.get("mirror/abc.txt").is_some());
/// assert!(sums.get("empty.bin").is_none());
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    digests: HashMap<String, Sha256Digest>,
}

impl Sha256Sums {
    /// The digest listed for `name`: under `name` itself, or else under its last component
    /// (the name the file gets locally). A leading `./` of a listed name is ignored.
    pub fn get(&self, name: &str) -> Option<Sha256Digest> {
        let leaf = name.rsplit('/').next().unwrap_or(name);
        self.digests
            .get(name)
            .or_else(|| self.digests.get(leaf))
            .copied()
    }

    /// How many names the list holds.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// True when the list holds no name.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// The line `sha256sum` would write for `digest` and `name` (no newline at the end):
    /// `<hex>  <name>`, or `\<hex>  <name>` with `\` and newlines escaped when the name has
    /// either.
    pub fn line(digest: &Sha256Digest, name: &str) -> String {
        if name.contains(['\\', '\n', '\r']) {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('\r', "\\r");
            format!("\\{digest}  {escaped}")
        } else {
            format!("{digest}  {name}")
        }
    }
}

impl FromStr for Sha256Sums {
    type Err = Error;

    /// Parses a whole list; a malformed line, or a name listed twice with different
    /// digests, is an [`Error::InvalidOption`] for `sha256 list` naming the line.
    fn from_str(text: &str) -> Result<Self> {
        let mut digests = HashMap::new();
        for (number, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.trim().is_empty() {
                continue;
            }
            let bad = |problem: &str| {
                Error::invalid(
                    "sha256 list",
                    format!("line {}: {problem}: {line:?}", number + 1),
                )
            };
            let (escaped, line_body) = match line.strip_prefix('\\') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (hex, rest) = line_body
                .split_at_checked(64)
                .ok_or_else(|| bad("not `<64 hex digits>  <name>`"))?;
            let digest = parse_hex(hex).ok_or_else(|| bad("not 64 hexadecimal digits"))?;
            let name = rest
                .strip_prefix("  ")
                .or_else(|| rest.strip_prefix(" *"))
                .filter(|name| !name.is_empty())
                .ok_or_else(|| bad("not `<64 hex digits>  <name>`"))?;
            let name = if escaped {
                unescape(name).ok_or_else(|| bad("bad escape in the name"))?
            } else {
                name.to_owned()
            };
            let name = name.strip_prefix("./").map(str::to_owned).unwrap_or(name);
            match digests.insert(name.clone(), digest) {
                Some(other) if other != digest => {
                    return Err(bad(&format!("{name:?} is listed twice, with two digests")))
                }
                _ => {}
            }
        }
        Ok(Sha256Sums { digests })
    }
}

/// Undoes `sha256sum`'s escapes in a name: `\\`, `\n` and `\r`.
fn unescape(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            '\\' => '\\',
            'n' => '\n',
            'r' => '\r',
            _ => return None,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn hex_round_trips_and_is_checked() {
        let digest: Sha256Digest = ABC.parse().unwrap();
        assert_eq!(digest, Sha256Digest::of(b"abc"));
        assert_eq!(digest.to_string(), ABC);
        assert_eq!(ABC.to_uppercase().parse::<Sha256Digest>().unwrap(), digest);
        for bad in [
            "",
            &ABC[1..],
            &format!("{ABC}0"),
            &ABC.replace('a', "g"),
            "é",
        ] {
            assert!(
                matches!(
                    bad.parse::<Sha256Digest>(),
                    Err(Error::InvalidOption {
                        option: "sha256",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn hashing_checks_the_expected_digest() {
        let mut h = Hashing::default();
        h.update(b"a");
        h.update(b"bc");
        let abc = Sha256Digest::of(b"abc");
        assert_eq!(h.clone().finish(None).unwrap(), abc);
        assert_eq!(h.clone().finish(Some(abc)).unwrap(), abc);
        let other = Sha256Digest::of(b"");
        match h.finish(Some(other)) {
            Err(Error::ChecksumMismatch { expected, actual }) => {
                assert_eq!((expected, actual), (other, abc));
            }
            got => panic!("{got:?}"),
        }
        assert_eq!(other.to_string(), EMPTY);
    }

    #[test]
    fn lists_in_both_modes_with_escapes() {
        let text = format!(
            "{ABC}  a.txt\r\n\n{EMPTY} *bin/e.bin\n  \n\\{ABC}  odd\\\\name\\nx\n{EMPTY}  ./dot\n"
        );
        let sums: Sha256Sums = text.parse().unwrap();
        assert_eq!(sums.len(), 4);
        let abc = Sha256Digest::of(b"abc");
        let empty = Sha256Digest::of(b"");
        assert_eq!(sums.get("a.txt"), Some(abc));
        assert_eq!(sums.get("far/away/a.txt"), Some(abc));
        assert_eq!(sums.get("bin/e.bin"), Some(empty));
        assert_eq!(sums.get("e.bin"), None);
        assert_eq!(sums.get("odd\\name\nx"), Some(abc));
        assert_eq!(sums.get("dot"), Some(empty));
        assert_eq!(sums.get("b.txt"), None);
        // The exact name wins over the last component.
        let sums: Sha256Sums = format!("{ABC}  x\n{EMPTY}  d/x\n").parse().unwrap();
        assert_eq!(sums.get("d/x"), Some(empty));
        assert_eq!(sums.get("e/x"), Some(abc));
    }

    #[test]
    fn bad_lists_name_the_line() {
        for (text, line) in [
            (format!("{ABC}  a\nnonsense\n"), 2),
            (format!("{ABC} a\n"), 1),
            (format!("{ABC}  \n"), 1),
            (format!("\n\n{}  a\n", &ABC[..63]), 3),
            (format!("{ABC}  a\n{EMPTY}  a\n"), 2),
            (format!("\\{ABC}  a\\q\n"), 1),
            (format!("SHA256 (a) = {ABC}\n"), 1),
        ] {
            let err = text.parse::<Sha256Sums>().unwrap_err();
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("invalid sha256 list: line {line}:")),
                "{text:?}: {message}"
            );
        }
        // The same digest twice is no contradiction.
        assert!(format!("{ABC}  a\n{ABC} *a\n")
            .parse::<Sha256Sums>()
            .is_ok());
    }

    #[test]
    fn lines_are_what_sha256sum_writes() {
        let abc = Sha256Digest::of(b"abc");
        assert_eq!(
            Sha256Sums::line(&abc, "dir/a.txt"),
            format!("{ABC}  dir/a.txt")
        );
        let odd = "odd\\name\nx";
        let line = Sha256Sums::line(&abc, odd);
        assert_eq!(line, format!("\\{ABC}  odd\\\\name\\nx"));
        let sums: Sha256Sums = line.parse().unwrap();
        assert_eq!(sums.get(odd), Some(abc));
    }
}
