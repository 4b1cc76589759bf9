//! The `medic` binary: see `medic --help`.

fn main() -> std::process::ExitCode {
    medic::cli::main()
}
