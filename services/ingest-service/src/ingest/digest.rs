//! SHA-256 that can be resumed: the hash state after some bytes, kept as text with a report's
//! record, so that an append hashes only its own bytes and still records the SHA-256 of the
//! whole report (which it never reads).

/// The initial hash value of SHA-256 (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// SHA-256 over the bytes given so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSha256 {
    state: [u32; 8],
    /// Bytes compressed into `state` (a multiple of 64).
    compressed: u64,
    /// Bytes after those, fewer than 64.
    pending: Vec<u8>,
}

impl Default for RunningSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl RunningSha256 {
    /// The hash of no bytes yet.
    pub fn new() -> Self {
        RunningSha256 {
            state: INITIAL,
            compressed: 0,
            pending: Vec::with_capacity(64),
        }
    }

    /// Hashes `bytes` after what came before.
    pub fn update(&mut self, mut bytes: &[u8]) {
        if !self.pending.is_empty() {
            let take = (64 - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < 64 {
                return;
            }
            let block = std::mem::take(&mut self.pending);
            self.compress(&block);
        }
        let whole = bytes.len() - bytes.len() % 64;
        for block in bytes[..whole].chunks_exact(64) {
            self.compress(block);
        }
        self.pending.extend_from_slice(&bytes[whole..]);
    }

    // `compress256` takes sha2 0.10's block type, which its dependency marks deprecated.
    #[allow(deprecated)]
    fn compress(&mut self, block: &[u8]) {
        use sha2::digest::generic_array::GenericArray;
        sha2::compress256(
            &mut self.state,
            std::slice::from_ref(GenericArray::from_slice(block)),
        );
        self.compressed += 64;
    }

    /// The SHA-256 of every byte given so far (this value can go on being updated).
    pub fn digest(&self) -> [u8; 32] {
        let mut last = self.clone();
        let bits = (self.compressed + self.pending.len() as u64) * 8;
        let mut padding = vec![0x80u8];
        let used = (self.pending.len() + 1) % 64;
        let zeros = if used <= 56 { 56 - used } else { 120 - used };
        padding.resize(1 + zeros, 0);
        padding.extend_from_slice(&bits.to_be_bytes());
        last.update(&padding);
        debug_assert!(last.pending.is_empty());
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(last.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// As text: `state:compressed:pending`, the state and the pending bytes in hex.
    pub fn encode(&self) -> String {
        let state: Vec<u8> = self
            .state
            .iter()
            .flat_map(|word| word.to_be_bytes())
            .collect();
        format!(
            "{}:{}:{}",
            hex::encode(state),
            self.compressed,
            hex::encode(&self.pending)
        )
    }

    /// Reads what [`RunningSha256::encode`] wrote.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let state = hex::decode(parts.next()?).ok()?;
        let compressed: u64 = parts.next()?.parse().ok()?;
        let pending = hex::decode(parts.next()?).ok()?;
        if parts.next().is_some()
            || state.len() != 32
            || pending.len() >= 64
            || !compressed.is_multiple_of(64)
        {
            return None;
        }
        let mut words = [0u32; 8];
        for (word, chunk) in words.iter_mut().zip(state.chunks_exact(4)) {
            *word = u32::from_be_bytes(chunk.try_into().ok()?);
        }
        Some(RunningSha256 {
            state: words,
            compressed,
            pending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::RunningSha256;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    proptest! {
        #[test]
        fn any_split_resumed_through_text_gives_the_sha256_of_the_whole(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..600, 0..5),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|cut| cut.min(bytes.len())).collect();
            cuts.sort_unstable();
            let mut running = RunningSha256::new();
            let mut from = 0;
            for cut in cuts.into_iter().chain([bytes.len()]) {
                running.update(&bytes[from..cut]);
                running = RunningSha256::decode(&running.encode()).unwrap();
                from = cut;
                let expected: [u8; 32] = Sha256::digest(&bytes[..cut]).into();
                prop_assert_eq!(running.digest(), expected);
            }
        }
    }

    #[test]
    fn damaged_text_is_refused() {
        assert!(RunningSha256::decode("").is_none());
        assert!(RunningSha256::decode("00:0:").is_none());
        let good = RunningSha256::new().encode();
        assert!(RunningSha256::decode(&good).is_some());
        assert!(RunningSha256::decode(&format!("{good}:x")).is_none());
    }
}
