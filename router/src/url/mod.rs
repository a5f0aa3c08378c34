//! Function URLs: plain HTTP to a function, as Lambda's function URLs are. The request becomes
//! Lambda's payload format version 2.0 event ([`event`]), the function's answer goes back as an
//! HTTP response ([`response`]), and CORS is applied as Lambda applies it ([`cors`]). [`serve`]
//! is the URL listener's handler (started with `--url-listen`). The settings are the Function's
//! `url` section (`lmi_crds::function_url`).

pub mod cors;
pub mod event;
pub mod response;
pub mod serve;

pub use lmi_crds::function_url::{
    FunctionUrlConfig as UrlConfig, UrlAuthType as AuthType, UrlInvokeMode as InvokeMode, url_id,
};
