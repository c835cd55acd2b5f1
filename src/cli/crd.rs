//! `vigil crd`: vigil's CustomResourceDefinitions as YAML.

use super::exit::{EXIT_CANNOT_RUN, EXIT_PASS, Failure};

/// The examples of `vigil crd --help`.
pub const EXAMPLES: &str = "Examples:\n  \
    vigil crd | kubectl apply -f -\n  \
    vigil crd > deploy/crds/vigil.dev_crds.yaml";

/// Prints the CRDs on standard output.
pub fn run() -> Result<u8, Failure> {
    print!(
        "{}",
        vigil::api::crd::crds_yaml().map_err(|e| Failure {
            code: EXIT_CANNOT_RUN,
            message: format!("cannot render the CRDs: {e}"),
        })?
    );
    Ok(EXIT_PASS)
}
