//! The plan parser (`sluice plan validate`, `POST /v1/rollouts`): any text
//! is a plan or a list of problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = sluice_core::plan::parse_plan(text);
    }
});
