//! Path ID validation: IDs are checked before any gRPC call is made.

use crate::error::Failure;

/// The longest accepted ID.
pub const MAX_ID_LEN: usize = 128;

/// True if `id` matches `[A-Za-z0-9_$-]{1,128}`.
pub fn is_valid(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-'))
}

/// `Ok(id)` if valid, else an `INVALID_ID` failure naming `what` (e.g. "entry ID").
pub fn check<'a>(id: &'a str, what: &str) -> Result<&'a str, Failure> {
    if is_valid(id) {
        Ok(id)
    } else {
        Err(Failure::invalid_id(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concur_and_workspace_ids_are_accepted() {
        for id in [
            "A2C40CEE415B43B2A0BE",
            "aBcDeMwbl34xnwdkUw5ZjDsggDl2$pyoy31$pnGaHAywmPrpbAmE",
            "ws_1-2",
            "x",
            &"a".repeat(128),
        ] {
            assert!(is_valid(id), "{id}");
        }
    }

    #[test]
    fn empty_long_and_punctuated_ids_are_refused() {
        for id in [
            "",
            &"a".repeat(129),
            "a/b",
            "a.b",
            "a b",
            "..",
            "a%2Fb",
            "é",
            "a\0",
        ] {
            assert!(!is_valid(id), "{id:?}");
        }
        assert_eq!(
            check("a/b", "entry ID").unwrap_err().reason(),
            Some(imaging_proto::v1::ErrorReason::InvalidId)
        );
    }
}
