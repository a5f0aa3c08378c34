//! Payloads in the sidecar: read into one buffer sized by the announced length (no second copy
//! while collecting), and held together with their share of a byte budget, which goes back when
//! the payload has been written out and dropped.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::Held;
use crate::http_server::{self, Body};

/// A payload and the budget it holds.
#[derive(Debug)]
pub struct Payload {
    pub bytes: Bytes,
    budget: Option<OwnedSemaphorePermit>,
}

impl Payload {
    pub fn new(bytes: Bytes, budget: Option<OwnedSemaphorePermit>) -> Self {
        Self { bytes, budget }
    }

    /// As a response body; the budget is given back once the body is dropped (written out, or the
    /// peer went away).
    pub fn into_body(self) -> Body {
        http_server::boxed(Held::new(Full::new(self.bytes), self.budget))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    TooLarge,
    Other(String),
}

/// Read a body of at most `limit` bytes within `timeout`. With `announced` (the Content-Length)
/// the buffer is allocated once at its final size.
pub async fn read(
    mut body: Incoming,
    announced: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ReadError> {
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(ReadError::TooLarge);
    }
    let capacity = announced.map_or(0, |n| n as usize);
    let read = async move {
        let mut buf = BytesMut::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReadError::Other(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(ReadError::TooLarge);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or_else(|_| Err(ReadError::Other("timed out reading the body".to_string())))
}
