//! `isolab diff` and `isolab commit`: a container's upper layer, listed or made an image; the
//! work is in `isolab_runtime::image`.

use std::path::PathBuf;

use clap::Args;
use isolab_runtime::image::Store;

use super::image::failure;
use crate::failure::Failure;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A container started from an image.
    name: String,
    /// The image store's directory [default: $ISOLAB_STORE, else /var/lib/isolab].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A container started from an image (running or exited, not yet removed).
    name: String,
    /// NAME[:TAG] of the new image: the container's image plus its upper layer.
    image: String,
    /// The image store's directory [default: $ISOLAB_STORE, else /var/lib/isolab].
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
}

fn open(store: Option<PathBuf>) -> Result<Store, Failure> {
    Store::open(Store::default_root(store.as_deref())).map_err(failure)
}

/// One line per changed path, `A`dded, `C`hanged or `D`eleted, as `docker diff` prints them.
pub fn diff(args: DiffArgs) -> Result<(), Failure> {
    let changes = open(args.store)?.diff(&args.name).map_err(failure)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&changes).expect("changes serialize")
        );
    } else {
        for change in changes {
            println!("{} {}", change.kind.letter(), change.path);
        }
    }
    Ok(())
}

pub fn commit(args: CommitArgs) -> Result<(), Failure> {
    let record = open(args.store)?
        .commit_container(&args.name, &args.image)
        .map_err(failure)?;
    println!("sha256:{}", record.id);
    Ok(())
}
