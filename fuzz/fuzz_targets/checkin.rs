//! A check-in body as the server reads it (`POST /v1/agent/checkin`): JSON
//! into a `CheckinRequest`, then its validation; any bytes are accepted or
//! refused, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_api::agent::CheckinRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<CheckinRequest>(data) {
        let _ = request.validate();
    }
});
