use std::process::ExitCode;

fn main() -> ExitCode {
    signals::cli::main()
}
