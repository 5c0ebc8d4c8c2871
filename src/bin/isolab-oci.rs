//! `isolab-oci`: the OCI runtime command line (see `isolab_runtime::oci`).

fn main() -> std::process::ExitCode {
    isolab_runtime::oci::cli::main()
}
