//! The wire format: FileRequest and FileResponse fixed headers.
//!
//! All integers are big-endian. A FileRequest is a 5-byte header followed by the file name;
//! a FileResponse is an 8-byte header followed by `DataLength` bytes of file data. Decoding
//! checks every field and says which one was wrong.

use std::fmt;

/// The magic number that starts every record.
pub const MAGIC: u16 = 0x497E;
/// `Type` of a FileRequest.
pub const TYPE_REQUEST: u8 = 1;
/// `Type` of a FileResponse.
pub const TYPE_RESPONSE: u8 = 2;
/// Size of the FileRequest fixed header.
pub const REQUEST_HEADER_LEN: usize = 5;
/// Size of the FileResponse fixed header.
pub const RESPONSE_HEADER_LEN: usize = 8;
/// Longest file name a FileRequest may carry, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Largest file a FileResponse can describe (`DataLength` is 32 bits).
pub const MAX_DATA_LEN: u64 = u32::MAX as u64;

/// Which check a header failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// `MagicNo` was not 0x497E.
    Magic(u16),
    /// `Type` was not the one expected for this record.
    Type {
        /// The value received.
        found: u8,
        /// The value this record must carry.
        expected: u8,
    },
    /// `StatusCode` was neither 0 nor 1.
    Status(u8),
    /// `FilenameLen` was 0 or above 1024.
    NameLength(u16),
    /// `DataLength` was not 0 although `StatusCode` was 0.
    DataLength(u32),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DecodeError::Magic(m) => write!(f, "bad magic number 0x{m:04X} (expected 0x497E)"),
            DecodeError::Type { found, expected } => {
                write!(f, "bad record type {found} (expected {expected})")
            }
            DecodeError::Status(s) => write!(f, "bad status code {s} (expected 0 or 1)"),
            DecodeError::NameLength(n) => {
                write!(f, "bad file name length {n} (expected 1 to {MAX_NAME_LEN})")
            }
            DecodeError::DataLength(n) => {
                write!(f, "data length {n} with status 0 (expected 0)")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// The fixed header of a FileRequest: the length of the name that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// Length of the file name in bytes, 1 to 1024.
    pub name_len: u16,
}

impl RequestHeader {
    /// Encodes the 5-byte header.
    pub fn encode(&self) -> [u8; REQUEST_HEADER_LEN] {
        let [m0, m1] = MAGIC.to_be_bytes();
        let [n0, n1] = self.name_len.to_be_bytes();
        [m0, m1, TYPE_REQUEST, n0, n1]
    }

    /// Decodes and checks a 5-byte header.
    pub fn decode(bytes: &[u8; REQUEST_HEADER_LEN]) -> Result<Self, DecodeError> {
        let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        if bytes[2] != TYPE_REQUEST {
            return Err(DecodeError::Type {
                found: bytes[2],
                expected: TYPE_REQUEST,
            });
        }
        let name_len = u16::from_be_bytes([bytes[3], bytes[4]]);
        if name_len == 0 || usize::from(name_len) > MAX_NAME_LEN {
            return Err(DecodeError::NameLength(name_len));
        }
        Ok(RequestHeader { name_len })
    }
}

/// Encodes a whole FileRequest (header and name).
///
/// Returns `None` when the name is empty or longer than 1024 bytes.
pub fn encode_request(name: &[u8]) -> Option<Vec<u8>> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return None;
    }
    let header = RequestHeader {
        name_len: name.len() as u16,
    };
    let mut record = Vec::with_capacity(REQUEST_HEADER_LEN + name.len());
    record.extend_from_slice(&header.encode());
    record.extend_from_slice(name);
    Some(record)
}

/// The fixed header of a FileResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHeader {
    /// StatusCode 0: the file does not exist or cannot be read; no data follows.
    NotFound,
    /// StatusCode 1: this many bytes of file data follow.
    Found(u32),
}

impl ResponseHeader {
    /// Encodes the 8-byte header.
    pub fn encode(&self) -> [u8; RESPONSE_HEADER_LEN] {
        let (status, len) = match *self {
            ResponseHeader::NotFound => (0u8, 0u32),
            ResponseHeader::Found(len) => (1u8, len),
        };
        let [m0, m1] = MAGIC.to_be_bytes();
        let [l0, l1, l2, l3] = len.to_be_bytes();
        [m0, m1, TYPE_RESPONSE, status, l0, l1, l2, l3]
    }

    /// Decodes and checks an 8-byte header.
    pub fn decode(bytes: &[u8; RESPONSE_HEADER_LEN]) -> Result<Self, DecodeError> {
        let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(DecodeError::Magic(magic));
        }
        if bytes[2] != TYPE_RESPONSE {
            return Err(DecodeError::Type {
                found: bytes[2],
                expected: TYPE_RESPONSE,
            });
        }
        let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        match bytes[3] {
            0 if len == 0 => Ok(ResponseHeader::NotFound),
            0 => Err(DecodeError::DataLength(len)),
            1 => Ok(ResponseHeader::Found(len)),
            s => Err(DecodeError::Status(s)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_header_layout() {
        assert_eq!(
            RequestHeader { name_len: 0x0102 }.encode(),
            [0x49, 0x7E, 1, 0x01, 0x02]
        );
        assert_eq!(
            encode_request(b"a.txt").unwrap(),
            b"\x49\x7e\x01\x00\x05a.txt".to_vec()
        );
        assert!(encode_request(b"").is_none());
        assert!(encode_request(&[b'a'; 1025]).is_none());
        assert_eq!(encode_request(&[b'a'; 1024]).unwrap().len(), 1029);
    }

    #[test]
    fn response_header_layout() {
        assert_eq!(
            ResponseHeader::Found(0x0102_0304).encode(),
            [0x49, 0x7E, 2, 1, 1, 2, 3, 4]
        );
        assert_eq!(
            ResponseHeader::NotFound.encode(),
            [0x49, 0x7E, 2, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn each_field_named_on_decode() {
        assert_eq!(
            RequestHeader::decode(&[0x49, 0x7F, 1, 0, 1]),
            Err(DecodeError::Magic(0x497F))
        );
        assert_eq!(
            RequestHeader::decode(&[0x49, 0x7E, 2, 0, 1]),
            Err(DecodeError::Type {
                found: 2,
                expected: 1
            })
        );
        assert_eq!(
            RequestHeader::decode(&[0x49, 0x7E, 1, 0, 0]),
            Err(DecodeError::NameLength(0))
        );
        assert_eq!(
            RequestHeader::decode(&[0x49, 0x7E, 1, 0x04, 0x01]),
            Err(DecodeError::NameLength(1025))
        );
        assert_eq!(
            ResponseHeader::decode(&[0x49, 0x7E, 2, 2, 0, 0, 0, 0]),
            Err(DecodeError::Status(2))
        );
        assert_eq!(
            ResponseHeader::decode(&[0x49, 0x7E, 2, 0, 0, 0, 0, 9]),
            Err(DecodeError::DataLength(9))
        );
        assert_eq!(
            ResponseHeader::decode(&[0x49, 0x7E, 1, 1, 0, 0, 0, 9]),
            Err(DecodeError::Type {
                found: 1,
                expected: 2
            })
        );
        assert_eq!(
            DecodeError::Magic(0x1234).to_string(),
            "bad magic number 0x1234 (expected 0x497E)"
        );
    }

    proptest! {
        #[test]
        fn request_round_trips(len in 1u16..=1024) {
            let h = RequestHeader { name_len: len };
            prop_assert_eq!(RequestHeader::decode(&h.encode()), Ok(h));
        }

        #[test]
        fn request_record_round_trips(name in proptest::collection::vec(any::<u8>(), 1..=1024)) {
            let record = encode_request(&name).unwrap();
            let header: [u8; 5] = record[..5].try_into().unwrap();
            let h = RequestHeader::decode(&header).unwrap();
            prop_assert_eq!(usize::from(h.name_len), name.len());
            prop_assert_eq!(&record[5..], &name[..]);
        }

        #[test]
        fn response_round_trips(len in any::<u32>(), found in any::<bool>()) {
            let h = if found { ResponseHeader::Found(len) } else { ResponseHeader::NotFound };
            prop_assert_eq!(ResponseHeader::decode(&h.encode()), Ok(h));
        }

        /// Every 5-byte header is accepted exactly when all three fields are right.
        #[test]
        fn request_decode_checks_every_field(bytes in any::<[u8; 5]>()) {
            let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = u16::from_be_bytes([bytes[3], bytes[4]]);
            let valid = magic == MAGIC && bytes[2] == TYPE_REQUEST && (1..=1024).contains(&len);
            let decoded = RequestHeader::decode(&bytes);
            prop_assert_eq!(decoded.is_ok(), valid);
            if let Ok(h) = decoded {
                prop_assert_eq!(h.encode(), bytes);
            }
        }

        /// Every 8-byte header is accepted exactly when magic, type, status and length agree.
        #[test]
        fn response_decode_checks_every_field(bytes in any::<[u8; 8]>()) {
            let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
            let len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            let valid = magic == MAGIC
                && bytes[2] == TYPE_RESPONSE
                && (bytes[3] == 1 || (bytes[3] == 0 && len == 0));
            let decoded = ResponseHeader::decode(&bytes);
            prop_assert_eq!(decoded.is_ok(), valid);
            if let Ok(h) = decoded {
                prop_assert_eq!(h.encode(), bytes);
            }
        }

        /// Corrupting a valid header's magic or type is always caught, and named.
        #[test]
        fn corrupted_magic_or_type_rejected(len in any::<u32>(), bad_magic in any::<u16>(), bad_type in any::<u8>()) {
            prop_assume!(bad_magic != MAGIC && bad_type != TYPE_RESPONSE);
            let mut bytes = ResponseHeader::Found(len).encode();
            bytes[..2].copy_from_slice(&bad_magic.to_be_bytes());
            prop_assert_eq!(ResponseHeader::decode(&bytes), Err(DecodeError::Magic(bad_magic)));
            let mut bytes = ResponseHeader::Found(len).encode();
            bytes[2] = bad_type;
            prop_assert_eq!(
                ResponseHeader::decode(&bytes),
                Err(DecodeError::Type { found: bad_type, expected: TYPE_RESPONSE })
            );
        }
    }
}
