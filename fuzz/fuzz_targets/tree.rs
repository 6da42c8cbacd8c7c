//! Trees are CBOR decoded from (authenticated) blobs; decoding and validation must not panic,
//! as stored or with a format 2 repository's derived chunk ids and elided ctimes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = coffer::tree::Tree::decode(data) {
        if let Some(first) = tree.nodes.first() {
            let _ = tree.find(&first.name);
        }
        let _ = tree.encode();
    }
    if let Ok(tree) = coffer::tree::Tree::decode_for(data, &coffer_fuzz::AES_KEYS) {
        let _ = tree.encode_for(&coffer_fuzz::AES_KEYS);
    }
});
