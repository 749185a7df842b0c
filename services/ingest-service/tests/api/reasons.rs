//! Every documented reason stays reachable: each value of `ErrorReason` (but the unspecified
//! one) is what some test of a real client receives, by name. A reason no test can produce is
//! a reason no client can get.

/// The test sources that drive real clients: the service's end-to-end tests and the whole
/// stack's, and the gateway's route tests.
const TEST_DIRS: [&str; 3] = [
    "tests/api",
    "../../tests/tests/api",
    "../../gateway/src/routes",
];

fn sources() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = String::new();
    for dir in TEST_DIRS {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "rs")
                && path.file_name().is_some_and(|name| name != "reasons.rs")
            {
                all.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    all
}

#[test]
fn every_reason_is_asserted_by_a_test_of_a_real_client() {
    let sources = sources();
    let mut unreached = Vec::new();
    for reason in imaging_proto::reasons::all() {
        let name = reason.as_str_name();
        // Asserted as a gRPC reason, a JSON code, or the gateway's own reason.
        let asserted = sources.contains(&format!("\"{name}\""))
            || sources.contains(&format!("ErrorReason::{}", variant(name)));
        if !asserted {
            unreached.push(name);
        }
    }
    assert!(unreached.is_empty(), "no test receives {unreached:?}");
}

/// `ROUTE_NOT_FOUND` as its Rust variant, `RouteNotFound`.
fn variant(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_string() + &chars.as_str().to_ascii_lowercase()
            })
        })
        .collect()
}
