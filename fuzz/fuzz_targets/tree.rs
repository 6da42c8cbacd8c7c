//! Trees are CBOR decoded from (authenticated) blobs; decoding and validation must not panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = coffer::tree::Tree::decode(data) {
        if let Some(first) = tree.nodes.first() {
            let _ = tree.find(&first.name);
        }
        let _ = tree.encode();
    }
});
