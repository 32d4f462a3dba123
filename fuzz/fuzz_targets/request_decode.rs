//! The server's view of a FileRequest: any bytes a client may send.
//!
//! The header is accepted exactly when magic, type and length are right, and then encodes
//! back to the same bytes; the name that follows goes through the same check as on the
//! server, whose answer must be a relative path that stays inside the root.
#![no_main]

use filefetch::server::confine::check_name;
use filefetch::protocol::{
    encode_request, RequestHeader, MAGIC, MAX_NAME_LEN, REQUEST_HEADER_LEN, TYPE_REQUEST,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(fixed) = data.first_chunk::<REQUEST_HEADER_LEN>() else {
        return;
    };
    let magic = u16::from_be_bytes([fixed[0], fixed[1]]);
    let len = usize::from(u16::from_be_bytes([fixed[3], fixed[4]]));
    let valid = magic == MAGIC && fixed[2] == TYPE_REQUEST && (1..=MAX_NAME_LEN).contains(&len);
    let header = match RequestHeader::decode(fixed) {
        Ok(h) => h,
        Err(e) => {
            assert!(!valid, "valid header {fixed:?} refused: {e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(valid, "invalid header {fixed:?} accepted");
    assert_eq!(&header.encode(), fixed);
    assert_eq!(usize::from(header.name_len), len);

    // The name, as far as it arrived; the server reads exactly `len` bytes.
    let rest = &data[REQUEST_HEADER_LEN..];
    let name = &rest[..len.min(rest.len())];
    if name.len() == len {
        let record = encode_request(name).expect("a name of a valid length encodes");
        assert_eq!(&record[..], &data[..REQUEST_HEADER_LEN + len]);
    }
    if let Ok(checked) = check_name(name) {
        assert_eq!(checked.as_bytes(), name);
        assert!(!checked.starts_with('/'));
        assert!(checked
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".."));
    }
});
