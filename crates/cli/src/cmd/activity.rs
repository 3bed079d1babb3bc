//! `csipose activity` (train / eval / stream): not implemented yet, it waits for the Intel 5300 reader.

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`activity` is not implemented yet")
}
