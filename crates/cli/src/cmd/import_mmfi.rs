//! `csipose import-mmfi` (not implemented yet).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`import-mmfi` is not implemented yet")
}
