//! Typed configuration read from the environment (and an optional `.env`) once at start.
//!
//! Every variable is parsed here; a bad value stops the server with a message that names the
//! variable, what was wrong and what a good value looks like.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `LEPTOS_SITE_ADDR`: where the app listens. cargo-leptos sets it from `Cargo.toml`.
    pub listen_addr: SocketAddr,
    /// `LEPTOS_SITE_ROOT`: the folder with the built site (`pkg/`, favicon, …).
    pub site_root: PathBuf,
    /// `LEPTOS_ENV`: `PROD` in production (secure cookies, no dev conveniences), `DEV` otherwise.
    pub production: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {variable} is {value:?}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables; separate from [`Config::from_env`] so tests need not touch the
    /// process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let listen_addr = parse(
            "LEPTOS_SITE_ADDR",
            get("LEPTOS_SITE_ADDR").unwrap_or("127.0.0.1:3000"),
            "expected an address and port such as 127.0.0.1:3000",
        )?;
        let site_root = PathBuf::from(get("LEPTOS_SITE_ROOT").unwrap_or("target/site"));
        let production = match get("LEPTOS_ENV").map(str::to_ascii_uppercase).as_deref() {
            None | Some("DEV") | Some("DEVELOPMENT") => false,
            Some("PROD") | Some("PRODUCTION") => true,
            Some(other) => {
                return Err(ConfigError {
                    variable: "LEPTOS_ENV",
                    value: other.to_owned(),
                    problem: "expected DEV or PROD".to_owned(),
                })
            }
        };
        Ok(Self {
            listen_addr,
            site_root,
            production,
        })
    }
}

fn parse<T: std::str::FromStr>(
    variable: &'static str,
    value: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| ConfigError {
        variable,
        value: value.to_owned(),
        problem: expected.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(config.listen_addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.site_root, PathBuf::from("target/site"));
    }

    #[test]
    fn bad_address_names_the_variable() {
        let err = Config::from_vars(&vars(&[("LEPTOS_SITE_ADDR", "localhost")])).unwrap_err();
        assert_eq!(err.variable, "LEPTOS_SITE_ADDR");
        assert!(err.to_string().contains("LEPTOS_SITE_ADDR"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:3000"), "{err}");
    }
}
