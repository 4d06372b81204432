//! Typed error details (the gRPC "richer error model"): a `google.rpc.Status` in the
//! `grpc-status-details-bin` trailer whose `details` carry our own messages as
//! `google.protobuf.Any`. A caller decides on these, never on an error message's text.
//!
//! The two Google messages are declared here by hand (three and two fields, stable for a
//! decade) rather than pulling in a crate of every `google.rpc` type.

use prost::Message;

use crate::v1::{VaultErrorDetail, VaultErrorReason};

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// The type URL of [`VaultErrorDetail`] in a status's details.
pub const VAULT_ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/mcpauth.v1.VaultErrorDetail";

/// A token-vault error status whose details say `reason`.
pub fn vault_error(
    code: tonic::Code,
    message: impl Into<String>,
    reason: VaultErrorReason,
) -> tonic::Status {
    let message = message.into();
    let detail = VaultErrorDetail {
        reason: reason as i32,
    };
    let status = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![ProtoAny {
            type_url: VAULT_ERROR_DETAIL_TYPE_URL.to_owned(),
            value: detail.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, message, status.encode_to_vec().into())
}

/// The reason a token-vault error's details give; `Unspecified` when it carries none (an error
/// the code says enough about, or a vault older than the detail), or one this build does not
/// know.
pub fn vault_error_reason(status: &tonic::Status) -> VaultErrorReason {
    let Ok(rpc) = RpcStatus::decode(status.details()) else {
        return VaultErrorReason::Unspecified;
    };
    rpc.details
        .iter()
        .filter(|d| d.type_url == VAULT_ERROR_DETAIL_TYPE_URL)
        .find_map(|d| VaultErrorDetail::decode(d.value.as_slice()).ok())
        .and_then(|d| VaultErrorReason::try_from(d.reason).ok())
        .unwrap_or(VaultErrorReason::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_survives_the_status_and_the_message_is_not_read() {
        let s = vault_error(
            tonic::Code::FailedPrecondition,
            "connect again",
            VaultErrorReason::ReauthorizationRequired,
        );
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.message(), "connect again");
        assert_eq!(
            vault_error_reason(&s),
            VaultErrorReason::ReauthorizationRequired
        );
        // The older signal, a message prefix, is no longer a reason.
        let old = tonic::Status::failed_precondition("reauthorization_required: invalid_grant");
        assert_eq!(vault_error_reason(&old), VaultErrorReason::Unspecified);
        // Details that are not ours (or not a google.rpc.Status at all) give no reason.
        let junk = tonic::Status::with_details(
            tonic::Code::FailedPrecondition,
            "x",
            vec![0xff, 0x01, 0x02].into(),
        );
        assert_eq!(vault_error_reason(&junk), VaultErrorReason::Unspecified);
    }

    #[test]
    fn the_details_are_a_google_rpc_status_with_an_any() {
        let s = vault_error(
            tonic::Code::FailedPrecondition,
            "m",
            VaultErrorReason::ReauthorizationRequired,
        );
        let rpc = RpcStatus::decode(s.details()).unwrap();
        assert_eq!(rpc.code, tonic::Code::FailedPrecondition as i32);
        assert_eq!(rpc.message, "m");
        assert_eq!(rpc.details.len(), 1);
        assert_eq!(rpc.details[0].type_url, VAULT_ERROR_DETAIL_TYPE_URL);
    }
}
