//! Function URLs: plain HTTP to a function, as Lambda's function URLs are. Pure parts only so
//! far: the request as Lambda's payload format version 2.0 event ([`event`]), the function's
//! answer back as an HTTP response ([`response`]), and CORS as Lambda applies it ([`cors`]).
//! The URL listener, the `url` section of the Function and the chart's exposure are to come
//! (docs/data-plane.md, "Function URLs").

pub mod cors;
pub mod event;
pub mod response;
