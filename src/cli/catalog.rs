//! `c360 catalog sync`: register what a store has committed in the project's central
//! catalog (`[catalog] kind = "glue"`), from the store's own manifests.

use std::path::Path;

use anyhow::anyhow;
use clap::Subcommand;

use super::{exit, Failure};
use crate::mesh::glue::sync;
use crate::mesh::{CatalogKind, Mesh};
use crate::product::ProductSpec;
use crate::project::Project;

const SYNC_HELP: &str = "\
Registers, in the Glue Data Catalog of [catalog] in c360.toml, every committed version of
every product in the store (table <product>_v<major> in the products database, partition
as_of=<D> pointing at the committed run's prefix, Lake Formation tags when lf_tags = true)
and every committed feature snapshot (table <set>_v<version> in the features database).
Only what is committed (has a _manifest.json) is registered; what is registered already
is left as it is, so a second run prints \"unchanged\" everywhere.

Use it for the first registration of products published before [catalog] was set, and to
repair the catalog after an outage (a publish whose catalog step failed).

Column descriptions and classifications come from the job that publishes the product
(jobs/), else from the product's contract in the store.

Examples:
  c360 catalog sync
  c360 catalog sync --product customer_churn_scores
  c360 catalog sync --store s3://bucket/c360

Exit codes: 0 everything registered, 1 some item failed (each failure is printed with
its database, table and fix), 3 [catalog] kind = \"none\" (nothing to sync to).";

/// `c360 catalog`
#[derive(Debug, Subcommand)]
pub enum CatalogCmd {
    /// Register every committed product version and feature snapshot in the catalog.
    #[command(after_help = SYNC_HELP)]
    Sync {
        /// Only this product (its every committed version; no feature snapshots).
        #[arg(long)]
        product: Option<String>,
        /// The store to read (default: [store] uri of c360.toml, or C360_STORE).
        #[arg(long)]
        store: Option<String>,
    },
}

/// Runs a `c360 catalog` command.
pub fn run(config: Option<&Path>, cmd: CatalogCmd) -> Result<(), Failure> {
    let CatalogCmd::Sync { product, store } = cmd;
    let project = Project::load(config)?;
    if project.config.catalog.kind == CatalogKind::None {
        return Err(Failure {
            code: exit::INVALID_DEFINITION,
            error: anyhow!(
                "[catalog] kind = \"none\" in {}: there is no catalog to sync to; set [catalog] kind = \"glue\" (with the store on S3) first",
                project
                    .config_file
                    .as_ref()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "c360.toml (defaults: no file)".into())
            ),
        });
    }
    let uri = store.unwrap_or_else(|| project.store_uri());
    let mesh = Mesh::open(&project.config, &uri).map_err(|e| Failure {
        code: exit::INVALID_DEFINITION,
        error: e.into(),
    })?;
    let st = crate::store::open(&uri)?;
    let (jobs, _) = crate::pipeline::job::load_all(&project.jobs_dir());
    // The job's [product] over the stored contract: its classification and LF tags are
    // in the job only.
    let spec_of = |name: &str| -> Option<ProductSpec> {
        let job = jobs
            .iter()
            .find(|j| j.product.name.as_ref() as &str == name)?;
        let key = crate::store::layout::product_contract(name);
        let text = String::from_utf8(st.get(&key).ok()?).ok()?;
        let mut spec = sync::spec_from_contract(&text).ok()?;
        let p = &job.product;
        spec.classification = p.classification;
        spec.lf_tags = p.lf_tags.clone();
        for c in &mut spec.columns {
            c.classification = p.column_classification_of(&c.name);
        }
        Some(spec)
    };
    say!(
        "syncing {} into the {} catalog",
        st.uri(),
        mesh.catalog.kind()
    );
    let report = sync::sync(
        mesh.catalog.as_ref(),
        st.as_ref(),
        product.as_deref(),
        &spec_of,
        // A failed item prints under -q too: the error below points at it.
        &mut |line| {
            if line.outcome.is_err() {
                println!("{line}");
            } else {
                say!("{line}");
            }
        },
    )?;
    say!(
        "{} registered, {} unchanged, {} failed",
        report.registered(),
        report.unchanged(),
        report.failed()
    );
    if report.failed() > 0 {
        return Err(Failure {
            code: exit::FAILURE,
            error: anyhow!(
                "{} item(s) could not be registered (see above); fix the cause and run `c360 catalog sync` again",
                report.failed()
            ),
        });
    }
    Ok(())
}
