//! The command line as a whole: clap's own checks, and every command's examples parse.

use super::Cli;
use clap::{CommandFactory, Parser};

/// Every command with its path of names from the top (`["bench", "detection"]`).
fn commands() -> Vec<(Vec<String>, clap::Command)> {
    fn walk(path: &[String], command: &clap::Command, out: &mut Vec<(Vec<String>, clap::Command)>) {
        out.push((path.to_vec(), command.clone()));
        for sub in command.get_subcommands() {
            // Hidden commands are the program's own (the benchmark's services), not users'.
            if sub.get_name() == "help" || sub.is_hide_set() {
                continue;
            }
            let mut path = path.to_vec();
            path.push(sub.get_name().to_string());
            walk(&path, sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&[], &Cli::command(), &mut out);
    out
}

/// The words of a shell command line, up to a comment, pipe or redirection.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref().take_while(|&c| c != '\'') {
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            '#' | '|' | '>' | ';' | '&' if word.is_none() => break,
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The example command lines of a help text (continuation lines joined), as words.
fn examples(help: &str) -> Vec<Vec<String>> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in help.lines() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
        .iter()
        .filter_map(|line| {
            line.strip_prefix("vigil ")
                .or_else(|| line.strip_prefix("kubectl vigil "))
        })
        .map(|rest| {
            let mut all = vec!["vigil".to_string()];
            all.extend(words(rest));
            all
        })
        .collect()
}

#[test]
fn the_word_splitter_handles_quotes_comments_and_pipes() {
    assert_eq!(
        words(r#"judge --stable 'version="v1"' --header "X: a b" --x \"y  # a comment"#),
        [
            "judge",
            "--stable",
            "version=\"v1\"",
            "--header",
            "X: a b",
            "--x",
            "\"y"
        ]
    );
    assert_eq!(words("crd | kubectl apply -f -"), ["crd"]);
    assert_eq!(
        words("completions zsh > \"${fpath[1]}/_vigil\""),
        ["completions", "zsh"]
    );
}

#[test]
fn every_command_has_examples_that_parse() {
    let all = commands();
    assert!(all.len() >= 14, "{} commands", all.len());
    for (path, command) in all {
        let help = command
            .get_after_help()
            .map(ToString::to_string)
            .unwrap_or_default();
        let name = format!("vigil {}", path.join(" "));
        assert!(
            help.contains("Examples:"),
            "{name} has no examples:\n{help}"
        );
        let examples = examples(&help);
        assert!(!examples.is_empty(), "{name} has no example lines:\n{help}");
        for example in examples {
            if let Err(e) = Cli::try_parse_from(&example) {
                panic!("the example {example:?} of {name} does not parse:\n{e}");
            }
            assert!(
                example[1..].starts_with(&path),
                "the example {example:?} is not one of {name}"
            );
        }
    }
}

#[test]
fn clap_itself_is_consistent() {
    Cli::command().debug_assert();
}
