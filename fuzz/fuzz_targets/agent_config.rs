//! The agent's configuration (`/etc/sluice/agent.toml`): any text is a
//! configuration or an error naming where it is wrong, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sluice_agent::FileConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = FileConfig::parse(Path::new("agent.toml"), text);
    }
});
