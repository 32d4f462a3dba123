//! The client's view of a FileResponse header: any 8 bytes a server may send.
//!
//! A header is accepted exactly when magic, type, status and length agree, encodes back to
//! the same bytes, and a refusal always names a field.
#![no_main]

use filefetch::protocol::{DecodeError, ResponseHeader, MAGIC, RESPONSE_HEADER_LEN, TYPE_RESPONSE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(fixed) = data.first_chunk::<RESPONSE_HEADER_LEN>() else {
        return;
    };
    let magic = u16::from_be_bytes([fixed[0], fixed[1]]);
    let len = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    let status = fixed[3];
    match ResponseHeader::decode(fixed) {
        Ok(header) => {
            assert_eq!(magic, MAGIC);
            assert_eq!(fixed[2], TYPE_RESPONSE);
            assert_eq!(&header.encode(), fixed);
            match header {
                ResponseHeader::NotFound => assert_eq!((status, len), (0, 0)),
                ResponseHeader::Found(n) => assert_eq!((status, n), (1, len)),
            }
        }
        Err(DecodeError::Magic(m)) => assert!(m == magic && m != MAGIC),
        Err(DecodeError::Type { found, expected }) => {
            assert_eq!(magic, MAGIC);
            assert!(found == fixed[2] && found != TYPE_RESPONSE && expected == TYPE_RESPONSE);
        }
        Err(DecodeError::Status(s)) => {
            assert!(magic == MAGIC && fixed[2] == TYPE_RESPONSE && s == status && s > 1)
        }
        Err(DecodeError::DataLength(n)) => {
            assert!(magic == MAGIC && fixed[2] == TYPE_RESPONSE && status == 0);
            assert!(n == len && n != 0);
        }
        Err(e) => panic!("unexpected refusal {e:?} of {fixed:?}"),
    }
});
