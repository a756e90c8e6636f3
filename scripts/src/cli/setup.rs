//! `kaggle_setup`: find and check credentials, fix their permissions, verify them with one
//! cheap authenticated call, and write `notebooks/kernel-metadata.json`.

use super::out::{say, shout};
use super::{Common, AFTER_HELP, EXIT_OK};
use crate::kaggle::credentials::Auth;
use crate::kaggle::metadata::{default_metadata, KERNEL_SLUG, MACHINE_SHAPE};
use crate::kaggle::source::SOURCE_SLUG;
use crate::kaggle::KaggleError;
use anyhow::Context;
use clap::Parser;

/// One-time setup: check Kaggle credentials and write the kernel metadata.
///
/// Prerequisites: a Kaggle account with phone verification (needed for GPU and internet) and
/// an API token from https://www.kaggle.com/settings saved as ~/.kaggle/kaggle.json (chmod
/// 600) or ~/.kaggle/access_token, or given in KAGGLE_API_TOKEN.
#[derive(Debug, Parser)]
#[command(name = "kaggle_setup", version, after_help = AFTER_HELP)]
pub struct SetupArgs {
    #[command(flatten)]
    pub common: Common,
    /// Kaggle user that owns the kernel (default: the credentials' user).
    #[arg(long, value_name = "NAME")]
    pub username: Option<String>,
    /// Do not list the checkpoint dataset (USER/emergence-lab-checkpoints) as a source.
    #[arg(long)]
    pub no_dataset_source: bool,
    /// Also list the kernel's own previous output (kernel_sources) as a source; off by
    /// default because Kaggle may refuse a kernel that reads its own output (not verified).
    #[arg(long)]
    pub self_source: bool,
}

/// Run `kaggle_setup`.
pub fn run(args: SetupArgs) -> anyhow::Result<i32> {
    let (client, creds) = args.common.connect()?;
    say!("Credentials: {}", creds.source);
    let verified_user = match &creds.auth {
        Auth::Bearer(token) => {
            let info = client.introspect(token.expose())?;
            if !info.active {
                return Err(KaggleError::Auth {
                    call: "IntrospectToken".into(),
                    status: 401,
                    detail: ": the token is not active (expired or revoked)".into(),
                }
                .into());
            }
            info.username
        }
        Auth::Basic { username, .. } => {
            client.list_my_kernels()?;
            Some(username.clone())
        }
    };
    say!(
        "Verified: Kaggle accepted the credentials{}",
        match &verified_user {
            Some(u) => format!(" (user {u})"),
            None => String::new(),
        }
    );
    let user = args
        .username
        .clone()
        .or(verified_user.clone())
        .or(creds.username.clone())
        .ok_or_else(|| {
            anyhow::anyhow!("cannot tell your Kaggle username from the token; pass --username NAME")
        })?;
    if let Some(v) = &verified_user {
        if v != &user {
            shout!("warning: the credentials belong to {v:?} but the kernel will be owned by {user:?}; pushes will fail unless you are {user:?}");
        }
    }
    if crate::kaggle::api::Ref::parse(&format!("{user}/{KERNEL_SLUG}")).is_none() {
        anyhow::bail!("{user:?} is not a valid Kaggle username");
    }
    let meta = default_metadata(&user, !args.no_dataset_source, args.self_source);
    let path = &args.common.metadata;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let existed = path.exists();
    std::fs::write(path, serde_json::to_string_pretty(&meta)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    say!(
        "{} {} (kernel {user}/{KERNEL_SLUG}, GPU {MACHINE_SHAPE} = T4 x2, internet on, private, source dataset {user}/{SOURCE_SLUG})",
        if existed { "Updated" } else { "Wrote" },
        path.display()
    );
    say!();
    say!("The metadata works as written: the first run needs no edits.");
    say!();
    say!("Next steps:");
    say!("  1. cargo run --release -p emergence_lab_scripts --bin kaggle_run -- --push-first   # send the source (private dataset {user}/{SOURCE_SLUG}), push and start the notebook");
    say!("  2. cargo run --release -p emergence_lab_scripts --bin kaggle_status -- --watch");
    say!("  3. cargo run --release -p emergence_lab_scripts --bin kaggle_download");
    say!("  4. cargo run --release -p emergence_lab_scripts --bin kaggle_publish          # carry checkpoints to the next session");
    say!("Longer runs: kaggle_run -- --push-first --sessions N chains N sessions (steps 2-4 done for you).");
    Ok(EXIT_OK)
}
