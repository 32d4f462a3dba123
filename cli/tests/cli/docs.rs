//! `filefetch man` and `filefetch completions SHELL`, as an installed binary gives them.

use tempfile::tempdir;

use crate::support::filefetch;

#[test]
fn man_prints_the_manual_page() {
    let dir = tempdir().unwrap();
    let out = filefetch(dir.path(), &["man"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("\n.TH filefetch 1 "), "{}", out.stdout);
    for option in [
        "log\\-format",
        "config",
        "request\\-timeout",
        "sha256\\-file",
    ] {
        assert!(
            out.stdout.contains(&format!("\\fB\\-\\-{option}\\fR")),
            "{option}"
        );
    }
    assert_eq!(out.stderr, "");
}

/// Every shell's script is printed; bash's is valid bash.
#[test]
fn completions_print_a_script_for_each_shell() {
    let dir = tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = filefetch(dir.path(), &["completions", shell]);
        assert_eq!(out.code, Some(0), "{shell}: {out:?}");
        assert!(out.stdout.contains("log-format"), "{shell}");
        assert_eq!(out.stderr, "");
    }
}

/// Checked by bash itself (`bash -n`), which Windows does not have.
#[cfg(unix)]
#[test]
fn bash_completion_is_valid_bash() {
    let dir = tempdir().unwrap();
    let out = filefetch(dir.path(), &["completions", "bash"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let script = dir.path().join("filefetch.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("run bash");
    assert!(checked.status.success(), "{checked:?}");
    assert!(checked.stderr.is_empty(), "{checked:?}");
    // Sourced, it registers the completion for the command.
    let sourced = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(". {:?} && complete -p filefetch", script))
        .output()
        .expect("run bash");
    assert!(sourced.status.success(), "{sourced:?}");
    assert!(
        String::from_utf8_lossy(&sourced.stdout).contains("filefetch"),
        "{sourced:?}"
    );
}
