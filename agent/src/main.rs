//! The `capstan` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    capstan::cli::main()
}
