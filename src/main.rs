//! `auto-order`: the edge binary. All logic lives in the library; this only runs the CLI.

fn main() -> std::process::ExitCode {
    auto_order::cli::main()
}
