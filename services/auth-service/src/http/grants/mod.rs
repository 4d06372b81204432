//! One module per grant type; `/token` only dispatches.

pub mod authorization_code;
pub mod client_credentials;
pub mod device_code;
pub mod refresh_token;
