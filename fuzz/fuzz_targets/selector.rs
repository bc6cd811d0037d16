//! The selector parser (plans, `--selector`, `GET /v1/hosts?selector=`): any
//! text is a selector or an error, and a selector's canonical form parses
//! back to the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(selector) = Selector::parse(text) {
        let canonical = selector.to_string();
        let again = Selector::parse(&canonical).unwrap_or_else(|error| {
            panic!("{canonical:?} (from {text:?}) does not parse: {error}")
        });
        assert_eq!(again, selector, "{canonical:?} (from {text:?})");
    }
});
