//! The documentation agrees with the code: every `cargo xtask` command line written in
//! README.md, ARCHITECTURE.md and docs/ (with docs/runbooks/) parses with the real command line (no flag or
//! subcommand that does not exist), the README's command table lists every command,
//! every relative link leads to a file (and heading) that exists, and the README's test
//! command is the one CI runs.

use std::path::{Path, PathBuf};

use clap::{CommandFactory as _, Parser as _, error::ErrorKind};
use xtask::{Cli, paths::workspace_root};

/// The Markdown files under `dir`, its subdirectories (docs/runbooks/) included.
fn markdown_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a docs directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            markdown_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
}

/// README.md, ARCHITECTURE.md and every Markdown file in docs/, with their text.
fn documents() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut paths = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs = Vec::new();
    markdown_files(&root.join("docs"), &mut docs);
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("read a document");
            (path, text)
        })
        .collect()
}

fn name(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `cargo xtask ...` command line of a Markdown text: in fenced code blocks (up to
/// a shell comment or the next shell operator) and in inline code spans.
fn xtask_commands(markdown: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            // A command line: `cargo xtask ...`, after environment variables if any.
            if let Some(start) = line.find("cargo xtask")
                && line[..start]
                    .split_whitespace()
                    .all(|word| word.contains('='))
            {
                let command = &line[start..];
                let end = [" #", " |", " &&", ";"]
                    .iter()
                    .filter_map(|stop| command.find(stop))
                    .min()
                    .unwrap_or(command.len());
                commands.push(command[..end].trim().to_owned());
            }
            continue;
        }
        // Inline code: the odd pieces between backticks.
        for (i, span) in line.split('`').enumerate() {
            if i % 2 == 1 && span.starts_with("cargo xtask") {
                commands.push(span.trim().to_owned());
            }
        }
    }
    commands
}

/// Splits a command line as a shell would for these simple cases: on spaces outside
/// single or double quotes, quotes removed.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The documents' placeholders, replaced by a value of the kind they stand for.
fn fill_placeholder(word: String) -> String {
    match word.as_str() {
        "TRACE_ID" => "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
        _ => word,
    }
}

#[test]
fn every_xtask_command_in_the_docs_parses() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, text) in documents() {
        for command in xtask_commands(&text) {
            let words = shell_words(&command);
            // `cargo xtask <command> --help`: a placeholder for any command.
            if words.len() < 3 || words.iter().any(|w| w.starts_with('<')) {
                continue;
            }
            let argv = std::iter::once("cargo xtask".to_owned())
                .chain(words.into_iter().skip(2).map(fill_placeholder));
            let argv: Vec<String> = argv.collect();
            checked += 1;
            let Err(error) = Cli::try_parse_from(&argv) else {
                continue;
            };
            let acceptable = match error.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::DisplayVersion => true,
                // A command named in prose (`cargo xtask chaos`), not a command line.
                ErrorKind::MissingRequiredArgument => argv.len() == 2,
                _ => false,
            };
            if !acceptable {
                problems.push(format!("{}: `{command}`: {error}", name(&path)));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The extraction itself must find the commands the documents are full of.
    assert!(checked >= 50, "only {checked} commands found in the docs");
}

#[test]
fn the_readme_command_table_lists_every_command() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    let cli = Cli::command();
    let commands: Vec<&str> = cli
        .get_subcommands()
        .filter(|command| !command.is_hide_set())
        .map(|command| command.get_name())
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|command| !readme.contains(&format!("\n| `cargo xtask {command}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's command table has no line for {missing:?}"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut in_block = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
        } else if !in_block && line.starts_with('#') {
            found.push(anchor(line.trim_start_matches('#')));
        }
    }
    found
}

/// The targets of `[text](target)` links.
fn link_targets(markdown: &str) -> Vec<String> {
    markdown
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.to_owned()))
        .collect()
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let mut checked = 0;
    let mut problems = Vec::new();
    for (path, text) in documents() {
        let dir = path.parent().expect("a directory");
        for target in link_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            checked += 1;
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let linked = if file.is_empty() {
                path.clone()
            } else {
                dir.join(file)
            };
            if !linked.exists() {
                problems.push(format!("{}: `{target}`: no such file", name(&path)));
                continue;
            }
            if !fragment.is_empty() {
                let text = std::fs::read_to_string(&linked).unwrap_or_default();
                if !anchors(&text).iter().any(|a| a == fragment) {
                    problems.push(format!("{}: `{target}`: no such heading", name(&path)));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 20, "only {checked} links found");
}

#[test]
fn the_readmes_test_command_is_the_one_ci_runs() {
    const TEST: &str = "cargo test --workspace";
    let ci = std::fs::read_to_string(workspace_root().join(".ci/run")).expect(".ci/run");
    let last = ci
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('#'))
        .expect("a command");
    assert_eq!(last, TEST, ".ci/run ends with another command");
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README");
    assert!(
        readme
            .lines()
            .any(|line| line.trim_start().starts_with(&format!("{TEST} ")) || line.trim() == TEST),
        "README.md does not give `{TEST}` as a command"
    );
}

#[test]
fn the_helpers_find_what_they_look_for() {
    let markdown = "\
Run `cargo xtask chaos all --clear`, or:

```sh
cargo xtask traffic --slo 'p99<500ms,errors<1%'   # a comment
DURATION=0 cargo xtask local | tee out
tilt up   # not after cargo xtask up
```
# A heading, with `code`
See [it](other.md#a-heading-with-code) and [web](https://example.com).
";
    assert_eq!(
        xtask_commands(markdown),
        [
            "cargo xtask chaos all --clear",
            "cargo xtask traffic --slo 'p99<500ms,errors<1%'",
            "cargo xtask local"
        ]
    );
    assert_eq!(
        shell_words("cargo xtask traffic --slo 'p99<500ms,errors<1%'"),
        ["cargo", "xtask", "traffic", "--slo", "p99<500ms,errors<1%"]
    );
    assert_eq!(anchors(markdown), ["a-heading-with-code"]);
    assert_eq!(
        link_targets(markdown),
        ["other.md#a-heading-with-code", "https://example.com"]
    );
}
