//! `filefetch man` and `filefetch completions SHELL`: the manual page and the shell
//! completion scripts, generated from the command line's own definition, so that they
//! describe every option the binary has, and come with the binary wherever it is installed.
//!
//! The manual page is one page, filefetch(1): the synopsis of each subcommand, then a
//! section per subcommand with its options (`clap_mangen` renders each part; the parts are
//! put together here), the config file, and the exit status.

use std::io::{self, Write};

use clap::CommandFactory;
use clap_mangen::roff::{roman, Roff};
use clap_mangen::Man;

use crate::args::{Cli, EXIT_CODES};

/// The config file's section of the manual page: the layout, and an example.
const CONFIG_FILE: &[&str] = &[
    "serve and fetch read options from the TOML file that --config names. Each key is a \
     long option's name, without the dashes in front, at the top level of the file. A value \
     is written as TOML writes it: a string, a number, true or false for an option that \
     takes no value, and a list for an option that can be repeated (one value alone is \
     taken too).",
    "The command line wins over the file: an option given there replaces the file's value, \
     and the file's values of options that cannot go with it are left out. --allow and \
     --deny are one list of rules: given on the command line, they replace all of the \
     file's; in the file, the rules come in the order of the keys, then of each list.",
    "A key that is not an option of the subcommand, or a value that the option refuses, is \
     a usage error (exit status 2) naming the file and the key. Relative paths are taken \
     from the current directory, as on the command line.",
];

/// The example of a config file, for `serve`.
const CONFIG_EXAMPLE: &str = "\
root = \"/srv/files\"
bind = [\"::\"]
request-timeout = 2.5
deny = [\"10.0.0.5\"]
allow = [\"10.0.0.0/8\"]
log-format = \"json\"
portable = false";

/// Writes the manual page (roff).
pub fn man(out: &mut dyn Write) -> io::Result<()> {
    // `filefetch help COMMAND` is `filefetch COMMAND --help`, which this page is.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let top = Man::new(cmd.clone());
    let subs: Vec<&clap::Command> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).collect();

    let mut page = String::new();
    // The first part keeps the preamble.
    page.push_str(&render_text(|w| top.render_title(w))?);
    page.push_str(&part(|w| top.render_name_section(w), Heading::Keep)?);
    page.push_str(".SH SYNOPSIS\n");
    for (i, sub) in subs.iter().enumerate() {
        if i > 0 {
            page.push_str(".br\n");
        }
        let man = Man::new((*sub).clone());
        page.push_str(&part(|w| man.render_synopsis_section(w), Heading::Drop)?);
    }
    page.push_str(&part(|w| top.render_description_section(w), Heading::Keep)?);

    for sub in &subs {
        let man = Man::new((*sub).clone());
        let name = sub.get_bin_name().unwrap_or_else(|| sub.get_name());
        let mut heading = Roff::new();
        heading.control("SH", [name.to_uppercase().as_str()]);
        page.push_str(&roff(&heading)?);
        page.push_str(&part(|w| man.render_synopsis_section(w), Heading::Drop)?);
        page.push_str(".PP\n");
        page.push_str(&part(|w| man.render_description_section(w), Heading::Drop)?);
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            page.push_str(&part(|w| man.render_options_section(w), Heading::Demote)?);
        }
        let after = sub.get_after_long_help().map(ToString::to_string);
        if let Some(after) = after.filter(|text| text != EXIT_CODES) {
            page.push_str(&roff(&preformatted(&after))?);
        }
    }

    let mut rest = Roff::new();
    rest.control("SH", ["CONFIGURATION FILE"]);
    for (i, paragraph) in CONFIG_FILE.iter().enumerate() {
        if i > 0 {
            rest.control("PP", []);
        }
        rest.text([roman(*paragraph)]);
    }
    rest.control("PP", []);
    rest.text([roman("For example, for serve:")]);
    page.push_str(&roff(&rest)?);
    page.push_str(&roff(&preformatted(CONFIG_EXAMPLE))?);
    let mut status = Roff::new();
    status.control("SH", ["EXIT STATUS"]);
    page.push_str(&roff(&status)?);
    let codes = EXIT_CODES
        .strip_prefix("Exit status:\n")
        .unwrap_or(EXIT_CODES);
    page.push_str(&roff(&preformatted(codes))?);
    page.push_str(&part(|w| top.render_version_section(w), Heading::Keep)?);
    out.write_all(page.as_bytes())
}

/// Writes the completion script for `shell`, into a buffer: `clap_complete` panics on a
/// failed write, which standard output can have (a closed pipe).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
}

/// What to do with a part's own `.SH` heading.
#[derive(Clone, Copy)]
enum Heading {
    Keep,
    Drop,
    /// Made a `.SS`, a heading inside the subcommand's section.
    Demote,
}

/// One part of the page as `clap_mangen` renders it, without the preamble that every
/// rendering starts with (the page's first part has it).
fn part(
    render: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    heading: Heading,
) -> io::Result<String> {
    let text = render_text(render)?;
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq") {
            continue;
        }
        match (line.strip_prefix(".SH "), heading) {
            (Some(_), Heading::Drop) => continue,
            (Some(title), Heading::Demote) => {
                out.push_str(".SS ");
                out.push_str(title);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

fn render_text(render: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<String> {
    let mut buf = Vec::new();
    render(&mut buf)?;
    String::from_utf8(buf).map_err(io::Error::other)
}

/// Roff of our own, without the preamble.
fn roff(roff: &Roff) -> io::Result<String> {
    part(|w| roff.to_writer(w), Heading::Keep)
}

/// Lines shown as they are (indentation kept).
fn preformatted(text: &str) -> Roff {
    let mut roff = Roff::new();
    roff.control("PP", []);
    roff.control("nf", []);
    for line in text.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Arg;

    fn page() -> String {
        let mut out = Vec::new();
        man(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The subcommands and their options that a user can see.
    fn visible() -> Vec<(String, Vec<Arg>)> {
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| {
                let args = s.get_arguments().filter(|a| !a.is_hide_set()).cloned();
                (s.get_name().to_owned(), args.collect())
            })
            .collect()
    }

    /// Every long option of every subcommand is in the manual page, with its help, and
    /// every option has help to show.
    #[test]
    fn the_man_page_documents_every_option() {
        let page = page();
        assert!(page.starts_with(".ie \\n(.g .ds Aq \\(aq\n"), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble");
        assert!(page.contains("\n.TH filefetch 1 "), "{page}");
        let subs = visible();
        let names: Vec<&str> = subs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["serve", "fetch", "man", "completions"]);
        for (name, args) in &subs {
            let heading = format!("\n.SH \"FILEFETCH {}\"\n", name.to_uppercase());
            let section = page
                .split_once(&heading)
                .unwrap_or_else(|| panic!("no section {heading:?}"))
                .1;
            // As a reader sees it: roff's dashes and apostrophes as typed.
            let section = section
                .split("\n.SH ")
                .next()
                .unwrap()
                .replace("\\-", "-")
                .replace("\\*(Aq", "'");
            for arg in args {
                let id = arg.get_id();
                let help = arg
                    .get_long_help()
                    .or(arg.get_help())
                    .unwrap_or_else(|| panic!("{name}: {id} has no help"))
                    .to_string();
                assert!(!help.trim().is_empty(), "{name}: {id}");
                if let Some(long) = arg.get_long() {
                    let shown = format!("\\fB--{long}\\fR");
                    assert!(
                        section.contains(&shown),
                        "{name}: --{long} not in {section}"
                    );
                }
                // The help's first words.
                let start: String = help
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ");
                assert!(
                    section.contains(&start),
                    "{name}: {id}: {start:?} not in {section}"
                );
            }
        }
        for section in ["CONFIGURATION FILE", "EXIT STATUS", "VERSION"] {
            assert!(
                page.contains(&format!("\n.SH \"{section}\"\n"))
                    || page.contains(&format!("\n.SH {section}\n")),
                "{section}"
            );
        }
        assert!(page.contains("130  interrupted"), "{page}");
    }

    /// What `filefetch SUBCOMMAND --help` prints lists every option of the subcommand.
    #[test]
    fn help_lists_every_option() {
        let mut cmd = Cli::command();
        cmd.build();
        let top = cmd.render_long_help().to_string();
        for (name, args) in visible() {
            assert!(top.contains(&format!("  {name} ")), "{name} not in {top}");
            let sub = cmd.find_subcommand_mut(&name).unwrap();
            let help = sub.render_long_help().to_string();
            for arg in args {
                let shown = match (arg.get_long(), arg.get_value_names()) {
                    (Some(long), _) => format!("--{long}"),
                    (None, Some(names)) => names[0].to_string(),
                    (None, None) => arg.get_id().as_str().to_uppercase(),
                };
                assert!(help.contains(&shown), "{name}: {shown} not in {help}");
            }
        }
    }

    #[test]
    fn completions_cover_the_subcommands_and_options() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
            clap_complete::Shell::Elvish,
            clap_complete::Shell::PowerShell,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let script = String::from_utf8(out).unwrap();
            for option in [
                "--log-format",
                "--config",
                "--request-timeout",
                "--sha256-file",
            ] {
                let bare = option.trim_start_matches('-');
                assert!(script.contains(bare), "{shell}: {option}");
            }
        }
    }
}
