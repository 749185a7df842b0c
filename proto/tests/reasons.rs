//! The contract's reason table (`imaging_proto::reasons`) is consistent: a reason's HTTP status
//! says what its gRPC code says, so a client of either transport draws the same conclusion.

use imaging_proto::reasons;
use tonic::Code;

#[test]
fn every_reason_has_an_http_status_of_the_same_kind_as_its_grpc_code() {
    let all = reasons::all();
    assert!(all.len() >= 31, "{}", all.len());
    for reason in all {
        let wire = reasons::of(reason);
        let agrees = match wire.grpc {
            Code::Unauthenticated => wire.http == 401,
            Code::PermissionDenied => wire.http == 403,
            Code::NotFound => wire.http == 404,
            Code::AlreadyExists => wire.http == 409,
            // Retry later: the one status that says so.
            Code::Unavailable => wire.http == 503,
            Code::Internal => wire.http == 500,
            Code::ResourceExhausted => wire.http == 429 || wire.http == 507,
            Code::DeadlineExceeded => wire.http == 408,
            Code::OutOfRange => wire.http == 413,
            // The client's to fix: a 4xx other than the ones named above.
            Code::InvalidArgument | Code::FailedPrecondition => {
                (400..500).contains(&wire.http)
                    && ![401, 403, 404, 408, 413, 429].contains(&wire.http)
            }
            _ => false,
        };
        assert!(agrees, "{reason:?}: {wire:?}");
    }
}

#[test]
fn only_internal_and_unavailable_reasons_are_server_errors() {
    for reason in reasons::all() {
        let wire = reasons::of(reason);
        assert_eq!(
            wire.http >= 500 && wire.http != 507,
            matches!(wire.grpc, Code::Internal | Code::Unavailable),
            "{reason:?}: {wire:?}"
        );
    }
}
