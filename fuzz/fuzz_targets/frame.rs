//! Frame decoding: the one-shot decoder and the incremental reader must
//! agree, never panic, and re-encoding a decoded frame gives the input.
#![no_main]

use enlace_protocol::frame::{FrameReader, decode_frame, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = decode_frame(data) {
        let mut out = Vec::new();
        encode_frame(payload, &mut out).expect("decoded payload re-encodes");
        assert_eq!(out, data);
    }

    // Feed the same bytes to the incremental reader in chunks whose sizes
    // come from the input; every frame it yields must be the next frame of
    // the input.
    let mut reader = FrameReader::new();
    let mut rest = data;
    let mut consumed = 0usize;
    let mut step = 1usize;
    while !rest.is_empty() {
        let chunk = &rest[..step.min(rest.len())];
        let used = match reader.handle_bytes(chunk) {
            Ok(used) => used,
            Err(_) => return,
        };
        assert!(used <= chunk.len());
        rest = &rest[used..];
        consumed += used;
        if let Some(frame) = reader.poll_frame() {
            let start = consumed - frame.len() - 4;
            let mut out = Vec::new();
            encode_frame(&frame, &mut out).expect("reader frames are valid");
            assert_eq!(&data[start..consumed], &out[..]);
        }
        step = (step * 3 + usize::from(chunk[0])) % 97 + 1;
    }
});
