//! InvokeWithResponseStream's body: the EE's answer, as it comes, re-framed as AWS event-stream
//! messages ([`crate::event_stream`]). Data becomes `PayloadChunk`s; the end becomes
//! `InvokeComplete`, carrying the error when the function reported one: in the trailers of a
//! streamed answer (`Lambda-Runtime-Function-Error-Type`, base64 JSON in `-Body`), or as a whole
//! error document before any byte (`X-Amz-Function-Error`).

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body as HttpBody, Frame};

use crate::event_stream;
use crate::http_server::{Body, BoxError};
use crate::sidecar::stream::{ERROR_BODY_TRAILER, ERROR_TYPE_TRAILER};

/// How much of an error document is kept for `ErrorDetails`.
const MAX_ERROR_DOCUMENT: usize = 256 * 1024;

pub struct EventStreamBody {
    inner: Body,
    /// The answer is an error document (collected, then sent in `InvokeComplete`).
    error_document: Option<Vec<u8>>,
    ready: VecDeque<Bytes>,
    done: bool,
}

impl EventStreamBody {
    pub fn new(inner: Body, function_error: bool) -> Self {
        Self {
            inner,
            error_document: function_error.then(Vec::new),
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn complete(&mut self, error: Option<(String, String)>) -> Frame<Bytes> {
        self.done = true;
        let error = error.as_ref().map(|(c, d)| (c.as_str(), d.as_str()));
        Frame::data(event_stream::invoke_complete(error))
    }
}

/// The error a streamed answer's trailers carry: (ErrorCode, ErrorDetails).
pub fn trailer_error(trailers: &HeaderMap) -> Option<(String, String)> {
    let code = trailers.get(ERROR_TYPE_TRAILER)?.to_str().ok()?.to_string();
    let details = trailers
        .get(ERROR_BODY_TRAILER)
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
        })
        .map(|doc| details_of(&doc))
        .unwrap_or_default();
    Some((code, details))
}

/// `ErrorDetails` from an error document: its `errorMessage`, else its text.
fn details_of(doc: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(doc)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(doc).into_owned())
}

impl HttpBody for EventStreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(message) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(message))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => {
                    if frame.is_trailers() {
                        let error = frame.trailers_ref().and_then(trailer_error);
                        return Poll::Ready(Some(Ok(this.complete(error))));
                    }
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match this.error_document.as_mut() {
                        Some(doc) => {
                            let room = MAX_ERROR_DOCUMENT.saturating_sub(doc.len());
                            doc.extend_from_slice(&data[..data.len().min(room)]);
                        }
                        None => this.ready.extend(event_stream::payload_chunks(&data)),
                    }
                }
                Poll::Ready(None) => {
                    let error = this
                        .error_document
                        .take()
                        .map(|doc| ("Unhandled".to_string(), details_of(&doc)));
                    return Poll::Ready(Some(Ok(this.complete(error))));
                }
                Poll::Ready(Some(Err(e))) => {
                    // The EE's connection broke mid-answer: the caller learns it in the last
                    // message rather than from a cut connection.
                    let error = (
                        "ServiceException".to_string(),
                        format!("the answer broke off: {e}"),
                    );
                    return Poll::Ready(Some(Ok(this.complete(Some(error)))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::stream::error_trailers;

    #[test]
    fn trailers_give_code_and_message() {
        let t = error_trailers("Runtime.StreamError", "broke after a chunk");
        assert_eq!(
            trailer_error(&t),
            Some((
                "Runtime.StreamError".to_string(),
                "broke after a chunk".to_string()
            ))
        );
        assert_eq!(trailer_error(&HeaderMap::new()), None);
    }
}
