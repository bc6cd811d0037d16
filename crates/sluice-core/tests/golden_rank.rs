//! Pins [`sluice_core::hash::rank`] to literal values.
//!
//! A change here reorders every rollout in flight: the hosts a running
//! rollout has admitted would no longer be the lowest-ranked ones, and it
//! would go on to admit different hosts than its preview showed. Never
//! update these numbers to make the test pass.
//!
//! The values are XXH3-64 (seed 0) of `salt ‖ 0x00 ‖ host_id`, checked once
//! against an independent implementation (the C reference, through Python's
//! `xxhash.xxh3_64_intdigest`). The inputs cover each of XXH3's length
//! classes (1–3, 4–8, 9–16, 17–128, 129–240 and over 240 bytes) and a
//! non-ASCII salt.

use sluice_core::hash::rank;

#[test]
fn rank_is_pinned() {
    let long_id = (0..10)
        .map(|i| format!("sto-playlist-a{i}"))
        .collect::<Vec<_>>()
        .join(".")
        + ".example.net";
    let very_long_id = "x".repeat(300);
    let golden: [(&str, &str, u64); 10] = [
        ("", "a", 0x892b_8dfd_07cb_7c54),
        ("salt", "", 0x6307_69b8_9c46_b593),
        ("r-7", "db1.sto", 0x3e8c_e91c_adab_3381),
        (
            "docker-17.03.1",
            "sto-playlist-a1.example.net",
            0x397a_d29f_f921_cb3f,
        ),
        (
            "docker-17.03.1",
            "lon-edge-a110.example.net",
            0xc36b_e6ee_4789_6541,
        ),
        (
            "kernel-4.9",
            "sto-playlist-a1.example.net",
            0xff18_1259_3284_e2eb,
        ),
        (
            "dockerd-config-2025-01",
            "ash-edge-a295.example.net",
            0xc9e9_fb6b_ac71_4c6c,
        ),
        (
            "räksmörgås",
            "sjc-artifact-a425.example.net",
            0xfb28_e876_60ca_52d2,
        ),
        ("docker-17.03.1", &long_id, 0x7320_289b_006f_535b),
        ("kernel-4.9", &very_long_id, 0xaa56_d580_0d2e_3e29),
    ];
    for (salt, host, expected) in golden {
        assert_eq!(
            rank(salt, host),
            expected,
            "rank({salt:?}, {host:?}) changed: this would reorder every rollout in flight"
        );
    }
}
