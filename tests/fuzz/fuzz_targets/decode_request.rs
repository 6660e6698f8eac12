//! Feeds arbitrary bytes to the broker's request decode path (header, every supported body,
//! and for Produce the batch split, validation and recompression): it must never panic, abort
//! or allocate by an untrusted length.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = shardlog::kafka::dispatch::decode_request(bytes::Bytes::copy_from_slice(data));
});
