//! The AWS event-stream encoding (`application/vnd.amazon.eventstream`) of an
//! `InvokeWithResponseStream` answer: `PayloadChunk` events carrying the function's bytes as they
//! come, then one `InvokeComplete`. Pure: bytes in, framed bytes out.
//!
//! A message is: total length (u32), headers length (u32), CRC-32 of those 8 bytes, the headers,
//! the payload, and the CRC-32 of everything before it; all integers big-endian. A header is its
//! name's length (u8), the name, a value type (7: string), the value's length (u16) and the value.

use bytes::{BufMut, Bytes, BytesMut};

/// The largest payload one `PayloadChunk` carries: larger pieces are split (the format allows
/// 16 MiB per message; smaller messages let the caller see bytes as they come).
pub const MAX_CHUNK: usize = 64 * 1024;

const STRING: u8 = 7;
/// Prelude (12 bytes) and the message's CRC (4 bytes).
const OVERHEAD: usize = 16;

/// One event message with `:message-type` event.
fn event(event_type: &str, content_type: &str, payload: &[u8]) -> Bytes {
    let headers: [(&str, &str); 3] = [
        (":event-type", event_type),
        (":content-type", content_type),
        (":message-type", "event"),
    ];
    let headers_len: usize = headers
        .iter()
        .map(|(name, value)| 1 + name.len() + 1 + 2 + value.len())
        .sum();
    let total = OVERHEAD + headers_len + payload.len();
    let mut out = BytesMut::with_capacity(total);
    // Lengths fit: headers are a few dozen bytes, payloads at most MAX_CHUNK or a small JSON.
    out.put_u32(total as u32);
    out.put_u32(headers_len as u32);
    out.put_u32(crc32fast::hash(&out[..8]));
    for (name, value) in headers {
        out.put_u8(name.len() as u8);
        out.put_slice(name.as_bytes());
        out.put_u8(STRING);
        out.put_u16(value.len() as u16);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(payload);
    out.put_u32(crc32fast::hash(&out));
    out.freeze()
}

/// `PayloadChunk` messages for a piece of the function's answer (one per [`MAX_CHUNK`] bytes).
pub fn payload_chunks(bytes: &[u8]) -> Vec<Bytes> {
    bytes
        .chunks(MAX_CHUNK)
        .map(|piece| event("PayloadChunk", "application/octet-stream", piece))
        .collect()
}

/// The closing `InvokeComplete`: without an error, or with Lambda's `ErrorCode` (the error type)
/// and `ErrorDetails` (its message).
pub fn invoke_complete(error: Option<(&str, &str)>) -> Bytes {
    let body = match error {
        None => serde_json::json!({}),
        Some((code, details)) => serde_json::json!({"ErrorCode": code, "ErrorDetails": details}),
    };
    event(
        "InvokeComplete",
        "application/json",
        body.to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type Message = (Vec<(String, String)>, Vec<u8>);

    /// A decoder as the SDKs have it, checking both CRCs: (headers, payload).
    fn decode(mut bytes: &[u8]) -> Vec<Message> {
        let mut messages = Vec::new();
        while !bytes.is_empty() {
            let word =
                |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
            let total = word(bytes, 0) as usize;
            let headers_len = word(bytes, 4) as usize;
            assert_eq!(word(bytes, 8), crc32fast::hash(&bytes[..8]), "prelude CRC");
            assert_eq!(
                word(bytes, total - 4),
                crc32fast::hash(&bytes[..total - 4]),
                "message CRC"
            );
            let mut h = &bytes[12..12 + headers_len];
            let mut headers = Vec::new();
            while !h.is_empty() {
                let n = h[0] as usize;
                let name = String::from_utf8(h[1..1 + n].to_vec()).expect("name");
                assert_eq!(h[1 + n], STRING);
                let len = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
                let value = String::from_utf8(h[4 + n..4 + n + len].to_vec()).expect("value");
                headers.push((name, value));
                h = &h[4 + n + len..];
            }
            messages.push((headers, bytes[12 + headers_len..total - 4].to_vec()));
            bytes = &bytes[total..];
        }
        messages
    }

    #[test]
    fn chunks_and_completion_decode_with_their_checksums() {
        let mut wire = Vec::new();
        for m in payload_chunks(b"hello") {
            wire.extend_from_slice(&m);
        }
        wire.extend_from_slice(&invoke_complete(None));
        let messages = decode(&wire);
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].1, b"hello");
        assert!(
            messages[0]
                .0
                .contains(&(":event-type".into(), "PayloadChunk".into()))
        );
        assert!(
            messages[0]
                .0
                .contains(&(":message-type".into(), "event".into()))
        );
        assert_eq!(messages[1].1, b"{}");
        assert!(
            messages[1]
                .0
                .contains(&(":event-type".into(), "InvokeComplete".into()))
        );
    }

    #[test]
    fn large_pieces_are_split_and_errors_carry_code_and_details() {
        let big = vec![7u8; MAX_CHUNK * 2 + 1];
        let chunks = payload_chunks(&big);
        assert_eq!(chunks.len(), 3);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| decode(c).remove(0).1).collect();
        assert_eq!(joined, big);
        let done = decode(&invoke_complete(Some(("Runtime.StreamError", "boom"))));
        let body: serde_json::Value = serde_json::from_slice(&done[0].1).expect("json");
        assert_eq!(body["ErrorCode"], "Runtime.StreamError");
        assert_eq!(body["ErrorDetails"], "boom");
    }

    #[test]
    fn a_known_frame_has_the_checksums_the_format_defines() {
        // CRC-32 (IEEE) of the ASCII digits, the standard check value.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        let m = invoke_complete(None);
        assert_eq!(
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]) as usize,
            m.len()
        );
    }
}
