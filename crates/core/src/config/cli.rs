//! Command-line config options (`--config FILE`, `--group.field value`) for every binary,
//! and the split of a command line into config options and the binary's own flags.
//!
//! Precedence: defaults < `--config` files (in order) < `--group.field` options (in order)
//! < `EMERGENCE_LAB_OVERRIDES`.

use std::ops::Range;
use std::path::PathBuf;

use super::error::ConfigError;
use super::overrides::{ConfigOverrides, Origin, Override};
use super::schema::{lookup, normalize_key, parse_bool, split_list, Kind, RawValue, GROUPS};
use super::Config;

enum Item {
    File(String),
    Set(String, RawValue),
    /// A config option that cannot be read (its error is reported separately).
    Bad,
    Other,
}

/// Scans `args`; each item covers `range` of the arguments. With `strict`, every `--a.b`
/// option is taken as a config option (so an unknown group is reported); otherwise only
/// options of a known group are.
fn scan(args: &[String], strict: bool) -> (Vec<(Item, Range<usize>)>, Vec<ConfigError>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let mut i = 0;
    let takes_value = |j: usize| args.get(j).is_some_and(|a| !a.starts_with("--"));
    while i < args.len() {
        let arg = &args[i];
        let start = i;
        i += 1;
        let Some(body) = arg.strip_prefix("--") else {
            items.push((Item::Other, start..i));
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "config" {
            let path = match inline {
                Some(p) => Some(p),
                None if i < args.len() => {
                    i += 1;
                    Some(args[i - 1].clone())
                }
                None => None,
            };
            match path {
                Some(p) if !p.is_empty() => items.push((Item::File(p), start..i)),
                _ => {
                    errors.push(ConfigError::Cli("--config needs a TOML file path".into()));
                    items.push((Item::Bad, start..i));
                }
            }
            continue;
        }
        let norm = normalize_key(name);
        let is_config = match norm.split_once('.') {
            Some((group, _)) => strict || GROUPS.contains(&group),
            None => false,
        };
        if !is_config {
            items.push((Item::Other, start..i));
            continue;
        }
        let spec = lookup(name);
        // `--group.no-flag` for a boolean field.
        let negated = spec.is_err().then(|| {
            let (group, field) = norm.split_once('.')?;
            let spec = lookup(&format!("{group}.{}", field.strip_prefix("no_")?)).ok()?;
            (spec.kind == Kind::Bool).then_some(spec)
        });
        if let Some(Some(spec)) = negated {
            if inline.is_some() {
                errors.push(ConfigError::Cli(format!(
                    "--{name} takes no value; write --{}=false or --{name}",
                    spec.key
                )));
            }
            items.push((
                Item::Set(spec.key.to_string(), RawValue::Bool(false)),
                start..i,
            ));
            continue;
        }
        let kind = match spec {
            Ok(spec) => spec.kind,
            Err(e) => {
                errors.push(e);
                if inline.is_none() && takes_value(i) {
                    i += 1;
                }
                items.push((Item::Bad, start..i));
                continue;
            }
        };
        let value = if let Some(v) = inline {
            RawValue::Text(v)
        } else {
            match kind {
                Kind::Bool => match args.get(i).and_then(|a| parse_bool(a)) {
                    Some(b) => {
                        i += 1;
                        RawValue::Bool(b)
                    }
                    None => RawValue::Bool(true),
                },
                Kind::UIntList | Kind::StrList | Kind::FloatMap => {
                    let mut parts = Vec::new();
                    while takes_value(i) {
                        let a = &args[i];
                        match kind {
                            Kind::StrList => parts.extend(
                                a.split(',')
                                    .map(str::trim)
                                    .filter(|p| !p.is_empty())
                                    .map(String::from),
                            ),
                            _ => parts.extend(split_list(a)),
                        }
                        i += 1;
                    }
                    if kind == Kind::FloatMap {
                        RawValue::Text(parts.join(","))
                    } else {
                        RawValue::List(parts.into_iter().map(RawValue::Text).collect())
                    }
                }
                _ if takes_value(i) => {
                    i += 1;
                    RawValue::Text(args[i - 1].clone())
                }
                _ => {
                    errors.push(ConfigError::Cli(format!(
                        "--{name} needs a value ({})",
                        kind.describe()
                    )));
                    items.push((Item::Bad, start..i));
                    continue;
                }
            }
        };
        items.push((Item::Set(name.to_string(), value), start..i));
    }
    (items, errors)
}

/// Separates config options (`--config FILE`, `--<group>.<field> ...` of a known group)
/// from a binary's own arguments; both keep their order. Pass the second list to clap and
/// the first to [`Config::load_cli`].
pub fn split_args(args: &[String]) -> (Vec<String>, Vec<String>) {
    let (items, _) = scan(args, false);
    let (mut config, mut other) = (Vec::new(), Vec::new());
    for (item, range) in items {
        let target = match item {
            Item::Other => &mut other,
            _ => &mut config,
        };
        target.extend(args[range].iter().cloned());
    }
    (config, other)
}

impl ConfigOverrides {
    /// Reads config options and files from `args`, then `env` (the text of
    /// `EMERGENCE_LAB_OVERRIDES`, if any), in precedence order. Arguments that are not config
    /// options are errors (use [`split_args`] first).
    pub fn from_cli_with_env(args: &[String], env: Option<&str>) -> Result<Self, ConfigError> {
        let (items, mut errors) = scan(args, true);
        let mut files = ConfigOverrides::default();
        let mut cli = ConfigOverrides::default();
        for (item, range) in items {
            match item {
                Item::File(path) => match ConfigOverrides::from_toml_file(&path) {
                    Ok(o) => files.extend(o),
                    Err(e) => errors.push(e),
                },
                Item::Set(key, value) => cli.entries.push(Override {
                    key,
                    value,
                    origin: Origin::Cli,
                }),
                Item::Bad => {}
                Item::Other => {
                    let arg = &args[range.start];
                    // `--total-steps 5`: point at `--train.total-steps`.
                    let hint = match arg
                        .strip_prefix("--")
                        .map(|a| lookup(a.split('=').next().unwrap_or(a)))
                    {
                        Some(Err(ConfigError::BadKey {
                            suggestion: Some(s),
                            ..
                        })) => {
                            format!(" (did you mean `--{}`?)", s.replace('_', "-"))
                        }
                        _ => String::new(),
                    };
                    errors.push(ConfigError::Cli(format!(
                        "unexpected argument {arg:?}{hint}: config options look like \
                         --group.field value (groups: {}) or --config FILE",
                        GROUPS.join(", ")
                    )))
                }
            }
        }
        if let Some(text) = env {
            match ConfigOverrides::from_env_str(text) {
                Ok(o) => cli.extend(o),
                Err(e) => errors.push(e),
            }
        }
        ConfigError::collect(errors)?;
        files.extend(cli);
        Ok(files)
    }

    /// [`ConfigOverrides::from_cli_with_env`] with this process's `EMERGENCE_LAB_OVERRIDES`.
    pub fn from_cli(args: &[String]) -> Result<Self, ConfigError> {
        // A value that is not text is an error, never silently ignored.
        let env = super::overrides::env_text()?;
        Self::from_cli_with_env(args, env.as_deref())
    }

    /// The `--config` files named in `args`, in order.
    pub fn config_files(args: &[String]) -> Vec<PathBuf> {
        let (items, _) = scan(args, false);
        items
            .into_iter()
            .filter_map(|(item, _)| match item {
                Item::File(p) => Some(PathBuf::from(p)),
                _ => None,
            })
            .collect()
    }
}

fn to_strings<I, S>(args: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    args.into_iter().map(Into::into).collect()
}

impl Config {
    /// The config of a binary: defaults < `--config FILE` < `--group.field value` <
    /// `EMERGENCE_LAB_OVERRIDES`, validated. `args` must hold only config options (see
    /// [`split_args`]); e.g. `Config::load_cli(std::env::args().skip(1))`.
    pub fn load_cli<I, S>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(Self::load_cli_with_overrides(args)?.0)
    }

    /// Like [`Config::load_cli`], also returning the explicit settings (file, CLI and
    /// environment) so that a resume can apply them to the checkpoint's config
    /// ([`ConfigOverrides::apply_for_resume`]).
    pub fn load_cli_with_overrides<I, S>(args: I) -> Result<(Config, ConfigOverrides), ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let overrides = ConfigOverrides::from_cli(&to_strings(args))?;
        Ok((overrides.apply_to(Config::default())?, overrides))
    }

    /// [`Config::load_cli`] with the environment text given explicitly (for tests).
    pub fn load_cli_with_env<I, S>(args: I, env: Option<&str>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ConfigOverrides::from_cli_with_env(&to_strings(args), env)?.apply_to(Config::default())
    }
}
