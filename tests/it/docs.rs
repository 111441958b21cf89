//! The documentation's transcripts, run: each `$ hookgate …` shown in the docs after a
//! config file they show is run on that file, and must print what the docs say it prints.

use std::process::Command;

/// The fenced blocks of a markdown file, as (info string, text).
fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            let text: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            out.push((info.to_string(), text.join("\n") + "\n"));
        }
    }
    out
}

/// Runs every `toml` block followed by a `text` transcript of `hookgate check`, in a
/// directory of its own, and compares what it prints.
fn run_check_transcripts(doc: &str) -> usize {
    let markdown =
        std::fs::read_to_string(format!("{}/{doc}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let blocks = blocks(&markdown);
    let mut ran = 0;
    for pair in blocks.windows(2) {
        let [(info_a, toml), (info_b, transcript)] = pair else {
            unreachable!()
        };
        let Some(command) = transcript.lines().next().and_then(|l| l.strip_prefix("$ ")) else {
            continue;
        };
        if info_a != "toml" || info_b != "text" || !command.contains("hookgate check") {
            continue;
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        let env: Vec<(&str, &str)> = words
            .iter()
            .take_while(|w| w.contains('='))
            .map(|w| w.split_once('=').unwrap())
            .collect();
        let args = &words[env.len() + 1..];
        let file = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
        let dir =
            std::env::temp_dir().join(format!("hookgate-doc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(args)
            .current_dir(&dir)
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let expected: String = transcript
            .lines()
            .skip(1)
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            printed.replace(&format!("{}/", dir.display()), ""),
            expected,
            "`{command}` in {doc} prints something else"
        );
        std::fs::remove_dir_all(dir).unwrap();
        ran += 1;
    }
    ran
}

#[test]
fn configuration_md_check_transcripts_are_what_check_prints() {
    assert_eq!(run_check_transcripts("docs/configuration.md"), 2);
}
