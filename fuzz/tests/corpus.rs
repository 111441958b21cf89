//! Replays every committed fuzz input through its target, on stable: what the fuzzer
//! once found (a crash, since fixed) or reached (new coverage) stays checked.

use std::path::Path;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (name, target) in hookgate_fuzz::TARGETS {
        let dir = root.join(name);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        inputs.sort();
        assert!(
            inputs.len() >= 5,
            "{name}: only {} inputs in {}",
            inputs.len(),
            dir.display()
        );
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name} fails on {}", input.display());
        }
    }
}
