//! `c360 products`: list the published data products, show one (owner, contract,
//! versions, latest statistics), get one customer's row.

use std::path::Path;

use clap::Subcommand;

use super::Failure;
use crate::product;
use crate::project::Project;

/// `c360 products`
#[derive(Debug, Subcommand)]
pub enum ProductsCmd {
    /// List the published data products.
    List {
        #[arg(long)]
        store: Option<String>,
    },
    /// Show a product: owner, contract, versions, latest statistics.
    Show {
        product: String,
        #[arg(long)]
        store: Option<String>,
    },
    /// One customer's row of the latest version, as JSON.
    Get {
        product: String,
        customer_id: String,
        #[arg(long)]
        store: Option<String>,
    },
}

/// Runs a `c360 products` command.
pub fn products(config: Option<&Path>, cmd: ProductsCmd) -> Result<(), Failure> {
    let project = Project::load(config)?;
    let open =
        |s: &Option<String>| crate::store::open(&s.clone().unwrap_or_else(|| project.store_uri()));
    match cmd {
        ProductsCmd::List { store } => {
            let st = open(&store)?;
            let list = product::list(st.as_ref())?;
            if list.is_empty() {
                println!(
                    "no products in {} yet (publish one with `c360 run JOB`)",
                    st.uri()
                );
            }
            println!(
                "{:<28} {:<14} {:<12} {:>9}  owner",
                "product", "domain", "latest", "versions"
            );
            for e in list {
                let latest = product::latest(st.as_ref(), &e.name)?
                    .map(|l| l.as_of.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<14} {:<12} {:>9}  {}",
                    e.name,
                    e.domain,
                    latest,
                    e.versions.len(),
                    e.owner
                );
            }
            Ok(())
        }
        ProductsCmd::Show {
            product: name,
            store,
        } => {
            let st = open(&store)?;
            let entry = product::list(st.as_ref())?
                .into_iter()
                .find(|e| e.name == name)
                .ok_or_else(|| product::ProductError::NotFound(name.clone()))?;
            println!(
                "{}  ({} domain, owner {})",
                entry.name, entry.domain, entry.owner
            );
            println!("{}", entry.description);
            println!("consumers: {}", entry.consumers.join(", "));
            println!("contract:  {}/{}", st.uri(), entry.contract);
            println!(
                "versions:  {}",
                entry
                    .versions
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some((l, m)) = product::resolve_latest(st.as_ref(), &name)? {
                println!(
                    "latest:    {} ({} rows, run {}, committed {})",
                    l.as_of, l.rows, l.run_id, l.committed_at
                );
                if let Some(s) = m.extra.get("score_statistics") {
                    println!(
                        "scores:    {}",
                        serde_json::to_string(s).unwrap_or_default()
                    );
                }
            }
            println!("columns:");
            for c in entry.columns {
                println!("  {:<20} {}", c.name, c.dtype);
            }
            Ok(())
        }
        ProductsCmd::Get {
            product: name,
            customer_id,
            store,
        } => {
            let st = open(&store)?;
            let row = product::get_customer(st.as_ref(), &name, &customer_id)?;
            println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            Ok(())
        }
    }
}
