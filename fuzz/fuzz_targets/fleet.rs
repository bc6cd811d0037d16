//! The fleet parser (`plan preview --fleet`, `sluice simulate`, `hosts
//! import`): any bytes are a fleet or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sluice_core::fleet::parse_fleet(data);
});
