//! Settings as the binary reads them: every problem found at once (for `serve --check-config`
//! and for a start-up that refuses), and secrets that may come from a file.
//!
//! A secret setting `CRM_X` may be given as a value (`--x`, or the variable `CRM_X`) or as
//! the path of a file holding it (`CRM_X_FILE`), the convention of container platforms
//! (Docker and Kubernetes secrets mount files). Given both ways it is refused: which one
//! wins would be a guess. A problem never carries a secret's value.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

/// One setting that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The setting as the operator names it: `--listen (CRM_LISTEN)`.
    pub setting: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.setting, self.message)
    }
}

impl std::error::Error for Problem {}

/// A setting's names: its flag and its environment variable.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub flag: &'static str,
    pub env: &'static str,
}

impl Setting {
    pub const fn new(flag: &'static str, env: &'static str) -> Setting {
        Setting { flag, env }
    }

    /// The name problems are reported under.
    pub fn name(self) -> String {
        format!("{} ({})", self.flag, self.env)
    }

    pub fn problem(self, message: impl Into<String>) -> Problem {
        Problem {
            setting: self.name(),
            message: message.into(),
        }
    }

    /// Parses `value` as a `T`; the problem quotes the value (use it only for settings that
    /// are not secret) and says what was expected.
    pub fn parse<T: FromStr>(self, value: &str, expected: &str) -> Result<T, Problem> {
        value
            .trim()
            .parse()
            .map_err(|_| self.problem(format!("{value:?} is not {expected}")))
    }

    /// Parses a listening address.
    pub fn address(self, value: &str) -> Result<SocketAddr, Problem> {
        self.parse(value, "an address to listen on, such as 127.0.0.1:8080")
    }
}

/// The secret settings, each of which also has a `_FILE` form.
pub const DATABASE: Setting = Setting::new("--database", "CRM_DATABASE");
/// The key that seals provider credentials (`CRM_SECRET_KEY`); its file may also be named
/// with `--secret-key-file`.
pub const SECRET_KEY: Setting = Setting::new("--secret-key-file", "CRM_SECRET_KEY");

/// Reads the environment variable `name`; an unset or non-UTF-8 variable is `None`.
fn var(name: &str) -> Option<String> {
    std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
}

/// The value of a secret `setting`: `given` (from its flag or variable, as the command
/// line parser found it) or the contents of the file named by `<ENV>_FILE`, without its
/// final line break. `None` when neither is set. Refused when both are, or when the file
/// cannot be read.
pub fn secret(setting: Setting, given: Option<String>) -> Result<Option<String>, Problem> {
    let file_var = format!("{}_FILE", setting.env);
    secret_from(setting, given, var(&file_var).as_deref())
}

/// As [`secret`], with the file's path given (by a flag, say) rather than read from
/// `<ENV>_FILE`.
pub fn secret_from(
    setting: Setting,
    given: Option<String>,
    file: Option<&str>,
) -> Result<Option<String>, Problem> {
    let file_var = format!("{}_FILE", setting.env);
    match (given, file) {
        (Some(_), Some(_)) => Err(setting.problem(format!(
            "given twice, as a value and in {file_var}; give it one way"
        ))),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => read_secret_file(Path::new(path))
            .map(Some)
            .map_err(|why| setting.problem(format!("{file_var} {path:?}: {why}"))),
        (None, None) => Ok(None),
    }
}

/// The contents of a secret file without its final line break (editors add one).
fn read_secret_file(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => "the file is not UTF-8 text".to_owned(),
        _ => e.to_string(),
    })?;
    let value = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if value.trim().is_empty() {
        return Err("the file is empty".to_owned());
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "postgres://crm:hunter2@db/crm";

    #[test]
    fn a_secret_comes_from_its_value_or_its_file_never_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("database");
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let file = path.to_str().unwrap();

        assert_eq!(secret_from(DATABASE, None, None), Ok(None));
        assert_eq!(
            secret_from(DATABASE, Some(SECRET.into()), None),
            Ok(Some(SECRET.into()))
        );
        // The final line break goes; the value is otherwise kept as written.
        assert_eq!(
            secret_from(DATABASE, None, Some(file)),
            Ok(Some(SECRET.into()))
        );
        let twice = secret_from(DATABASE, Some(SECRET.into()), Some(file)).unwrap_err();
        assert_eq!(twice.setting, "--database (CRM_DATABASE)");
        assert!(twice.message.contains("CRM_DATABASE_FILE"), "{twice}");
        assert!(!twice.to_string().contains("hunter2"), "{twice}");
    }

    #[test]
    fn an_unreadable_or_empty_file_is_a_problem_that_names_the_file_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let problem = secret_from(DATABASE, None, missing.to_str()).unwrap_err();
        assert!(problem.message.contains("missing"), "{problem}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let problem = secret_from(DATABASE, None, empty.to_str()).unwrap_err();
        assert!(problem.message.contains("empty"), "{problem}");
    }

    #[test]
    fn values_that_do_not_parse_are_named_with_what_was_expected() {
        let listen = Setting::new("--listen", "CRM_LISTEN");
        assert!(listen.address("127.0.0.1:0").is_ok());
        let problem = listen.address("localhost").unwrap_err();
        assert_eq!(
            problem.to_string(),
            "--listen (CRM_LISTEN): \"localhost\" is not an address to listen on, such as 127.0.0.1:8080"
        );
    }
}
